"""Property tests of the pure logic, no I/O: aggregates, the command pipeline, tokens and upcasters.

The command pipeline runs on the in-memory event store of tests/memory_store.py,
held to the Postgres store's contract (tests/contracts/test_event_store.py), so
whole command sequences can be generated and checked against simple models.

Every property is derandomized (the same examples on every run) and bounded.
The async code runs on an event loop of its own per example, never on the
test session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commands.customisation import CustomAttribute, Customisations
from commands.erp_model import ERP
from commands.errors import (
    BusinessRuleViolation,
    CommandError,
    InvalidCommand,
    MalformedCommand,
    StreamNotFound,
)
from commands.model import MAX_MONEY, Aggregate, ModelAggregate, Type
from commands.registry import COMMANDS
from commands.service import CommandService
from commands.store.event_store import CommandMetadata, ConcurrencyConflict
from commands.store.upcasting import Upcasters
from commands.stream_cache import StreamCache
from commands.unit_of_work import UnitOfWork
from core.tokens import InvalidToken, decode_token, encode_token
from queries.model_tables import COLUMN_TYPES
from tests.memory_store import NO_SQL, MemoryEventStore

PROPERTIES = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CENT = Decimal("0.01")
ACCOUNT = UUID(int=1)
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run async code on a loop of its own (the test session's loop is not running here)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def metadata() -> CommandMetadata:
    command_id = uuid.uuid4()
    return CommandMetadata(command_id, command_id, command_id)


# ---------------------------------------------------------------------------------------------
# the in-memory event store (tests/memory_store.py), as the pipeline's tests look at it


def snapshot(store: MemoryEventStore) -> list[tuple[str, int, int, str, str]]:
    """Everything stored, comparable across stores (no times, no command ids)."""
    streams = store.streams(ACCOUNT)
    return [
        (e.stream_id, e.stream_revision, e.sequence_number, e.name, json.dumps(e.payload, sort_keys=True))
        for stream in sorted(streams)
        for e in streams[stream]
    ]


def stored(store: MemoryEventStore, element: str, element_id: str) -> ModelAggregate:
    """The aggregate replayed from everything stored for it."""
    aggregate = ERP.aggregates[element](ERP.elements[element].stream_id(UUID(element_id)))
    aggregate.replay(store.streams(ACCOUNT).get(aggregate.stream_id, []))
    return aggregate


class NoCustomisations(Customisations):
    """An account that defined no custom attributes: the real checks, without the database."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]

    async def for_account(self, account_id: UUID) -> dict[str, dict[str, CustomAttribute]]:
        return {}


def service(store: MemoryEventStore, cache: StreamCache | None = None) -> CommandService:
    """The real command pipeline on the in-memory store (no pool: nothing here needs one)."""
    pipeline = CommandService(None, store=store, cache=cache)  # type: ignore[arg-type]
    pipeline.customisations = NoCustomisations()
    return pipeline


class RecordingUnitOfWork(UnitOfWork):
    """A unit of work that remembers every aggregate a handler touched."""

    def __init__(self, store: MemoryEventStore) -> None:
        super().__init__(NO_SQL, ACCOUNT, store)  # type: ignore[arg-type]
        self.touched: dict[str, Aggregate] = {}

    async def get(self, aggregate_type: type[Any], stream_id: str) -> Any:
        aggregate = await super().get(aggregate_type, stream_id)
        self.touched[stream_id] = aggregate
        return aggregate


# ---------------------------------------------------------------------------------------------
# generated commands


def ids(kind: int, count: int) -> st.SearchStrategy[str]:
    """A few fixed ids per kind of element, so that generated commands meet each other's streams."""
    return st.sampled_from([str(UUID(int=(kind << 8) + n)) for n in range(count)])


PERSONS, WORKAREAS, CUSTOMERS, ORDERS, DELIVERIES, INVOICES = (
    ids(kind, count) for kind, count in enumerate((2, 1, 2, 3, 2, 2), start=1)
)

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20
).filter(str.strip)
"""Valid text: Postgres cannot store U+0000, so the model refuses it (see test_parsing_never_raises_else)."""


def spelled(amount: Decimal) -> st.SearchStrategy[str]:
    """The amount in any spelling of the wire's grammar: "10.50", "10.5", "0010.50"; "10.00", "10"."""
    text = f"{amount:.2f}"
    short = text.rstrip("0").rstrip(".")
    return st.sampled_from([text, short]).flatmap(lambda t: st.sampled_from([t, t, "0" + t, "00" + t]))


MONEY = st.decimals(min_value=0, max_value=Decimal("1000000000000"), places=2).flatmap(spelled)
SMALL_MONEY = st.decimals(min_value=0, max_value=Decimal("1000"), places=2).flatmap(spelled)
NORMAL_MONEY = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")
"""Money as every event stores it, however it was spelled on the wire."""
MONEY_FIELDS = frozenset({"UnitPrice", "SpendingLimit", "OpenAmount", "Total", "Amount"})


def amounts(value: Any) -> list[Any]:
    """Every amount in a payload, records and Custom included."""
    if isinstance(value, list):
        return [amount for item in value for amount in amounts(item)]
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k in MONEY_FIELDS]
        return found + [a for k, v in value.items() if k not in MONEY_FIELDS for a in amounts(v)]
    return []


LINE = st.fixed_dictionaries(
    {
        "ProductCode": TEXT,
        "Quantity": st.integers(min_value=1, max_value=1_000_000) | st.just(1_000_000),
        # The limits too: at most 10**12 per unit (commands.model.MAX_MONEY).
        "UnitPrice": MONEY | st.sampled_from(["0", "0.5", "1", "19.99", "999999999999.99", "1000000000000"]),
    }
)
SMALL_LINE = st.fixed_dictionaries(
    {"ProductCode": TEXT, "Quantity": st.integers(1, 5), "UnitPrice": SMALL_MONEY}
)
PINNED = st.one_of(st.none(), st.none(), st.integers(0, 2))


def command(
    name: str, fields: Mapping[str, st.SearchStrategy[Any]], **optional: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(name, body); ExpectedRevision sometimes pins the command's stream."""
    body = st.fixed_dictionaries(dict(fields), optional={"ExpectedRevision": PINNED, **optional})
    return st.tuples(st.just(name), body)


PLACE = command(
    "PlaceOrder",
    {"OrderId": ORDERS, "CustomerName": TEXT, "OrderLines": st.lists(LINE, min_size=1, max_size=4)},
)
CANCEL = command("CancelOrder", {"OrderId": ORDERS, "Reason": TEXT})

ERP_COMMANDS = st.one_of(
    command("RegisterPerson", {"PersonId": PERSONS, "Name": TEXT}),
    command("CreateWorkarea", {"WorkareaId": WORKAREAS, "Name": TEXT}),
    command(
        "MakeCustomer",
        {"CustomerId": CUSTOMERS, "PartyId": PERSONS, "WorkareaId": WORKAREAS, "SpendingLimit": SMALL_MONEY},
    ),
    command("ChangeSpendingLimit", {"CustomerId": CUSTOMERS, "SpendingLimit": SMALL_MONEY}),
    command(
        "PlaceOrder",
        {"OrderId": ORDERS, "CustomerName": TEXT, "OrderLines": st.lists(SMALL_LINE, min_size=1, max_size=3)},
        CustomerId=CUSTOMERS,
    ),
    CANCEL,
    command("DeliverOrder", {"DeliveryId": DELIVERIES, "OrderId": ORDERS, "WorkareaId": WORKAREAS}),
    command("InvoiceOrder", {"InvoiceId": INVOICES, "OrderId": ORDERS}),
    command("PayInvoice", {"InvoiceId": INVOICES}),
)


def parser() -> CommandService:
    """The pipeline, for parsing only: no pool, and a store it never reaches."""
    return CommandService(None, MemoryEventStore())  # type: ignore[arg-type]


def parse(name: str, fields: Mapping[str, Any]) -> Any:
    return parser().parse(name, msgspec.json.encode(fields))


# ---------------------------------------------------------------------------------------------
# the Order aggregate


def line_total(lines: Sequence[Mapping[str, Any]]) -> Decimal:
    return sum((Decimal(line["Quantity"]) * Decimal(line["UnitPrice"]) for line in lines), Decimal(0))


@PROPERTIES
@given(st.lists(st.one_of(PLACE, CANCEL), min_size=1, max_size=12))
def test_order_decisions_replay_to_the_state_they_decided(steps: list[tuple[str, dict[str, Any]]]) -> None:
    """Place and cancel, any order: the aggregate replayed from the store has the state deciding gave,
    a PlaceOrder's total is the lines' sum rounded to cents, and a refusal raises no event."""
    store = MemoryEventStore()
    status: dict[str, str] = {}

    async def decide(name: str, fields: dict[str, Any]) -> None:
        parsed = parse(name, fields)
        uow = RecordingUnitOfWork(store)
        order_id = fields["OrderId"]
        now = status.get(order_id)
        if name == "PlaceOrder":
            over = line_total(fields["OrderLines"]).quantize(CENT) > MAX_MONEY
            refusal = BusinessRuleViolation if now is not None else InvalidCommand if over else None
        else:
            refusal = StreamNotFound if now is None else None if now == "Placed" else BusinessRuleViolation
        try:
            decided = await parsed.spec.handler(parsed.message, uow)
        except (BusinessRuleViolation, StreamNotFound, InvalidCommand) as refused:
            assert refusal is not None and isinstance(refused, refusal), (name, now, refused)
            assert all(not a.pending_events() for a in uow.touched.values()), "a refusal raised events"
            return
        assert refusal is None, (name, now, "accepted")
        assert isinstance(decided, ModelAggregate)
        if name == "PlaceOrder":
            (placed,) = decided.pending_events()
            expected_total = line_total(fields["OrderLines"]).quantize(CENT)
            assert placed.payload["Total"] == str(expected_total)
            assert Decimal(decided.state["Total"]) == expected_total
        decided_states = {
            stream_id: (a.state, a.revision + len(a.pending_events()))
            for stream_id, a in uow.touched.items()
            if isinstance(a, ModelAggregate)
        }
        await uow.commit(metadata())
        status[order_id] = "Placed" if name == "PlaceOrder" else "Cancelled"
        for stream_id, (state, revision) in decided_states.items():
            element, element_id = stream_id.split("-", 1)
            replayed = stored(store, element, element_id)
            assert (replayed.state, replayed.revision) == (state, revision), stream_id

    for name, fields in steps:
        run(decide(name, fields))
    for order_id, expected in status.items():
        assert stored(store, "Order", order_id).status == expected


MONEY_COLUMN = re.fullmatch(r"numeric\((\d+), (\d+)\)", COLUMN_TYPES[Type.MONEY])


@PROPERTIES
@given(PLACE)
@example(
    (
        "PlaceOrder",
        {
            "OrderId": str(UUID(int=1)),
            "CustomerName": "Largest single line",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1_000_000, "UnitPrice": "1000000000000"}],
        },
    )
)
def test_every_amount_an_accepted_order_holds_fits_its_read_model_column(
    place: tuple[str, dict[str, Any]],
) -> None:
    """An order the API accepts must be projectable: its money attributes fit the read model's
    money column, or the projector fails on the event (and, its batch rolling back whole, stops).
    The explicit example is the largest single line the wire types allow."""
    assert MONEY_COLUMN is not None
    precision, scale = (int(n) for n in MONEY_COLUMN.groups())
    name, fields = place
    parsed = parse(name, fields)
    try:
        order = run(parsed.spec.handler(parsed.message, RecordingUnitOfWork(MemoryEventStore())))
    except CommandError:
        return  # refused: nothing to project
    assert isinstance(order, ModelAggregate)
    for attr in ERP.elements["Order"].attributes:
        value = order.state.get(attr.name)
        if attr.type is Type.MONEY and value is not None:
            assert abs(Decimal(value)) < Decimal(10) ** (precision - scale), (
                f"Order.{attr.name} = {value} was accepted, but the read model's "
                f"{COLUMN_TYPES[Type.MONEY]} column cannot hold it"
            )


# ---------------------------------------------------------------------------------------------
# the command pipeline


Outcome = tuple[str, Any]


async def execute(service: CommandService, name: str, fields: Mapping[str, Any]) -> Outcome:
    try:
        result = await service.execute(ACCOUNT, parse(name, fields))
    except (CommandError, ConcurrencyConflict) as error:
        return (type(error).__name__, None)
    return ("ok", (result.stream_id, result.revision, result.positions, result.consistency_token))


def open_amounts(store: MemoryEventStore) -> dict[str, Decimal]:
    """Per customer: the totals of its orders that are neither cancelled nor paid."""
    amounts: dict[str, Decimal] = {}
    for stream_id in store.streams(ACCOUNT):
        if stream_id.startswith("Order-"):
            order = stored(store, "Order", stream_id.removeprefix("Order-"))
            customer = order.state.get("CustomerId")
            if customer and order.status not in ("Cancelled", "Paid"):
                amounts[customer] = amounts.get(customer, Decimal(0)) + Decimal(order.state["Total"])
    return amounts


SETUP = [
    (0, ("RegisterPerson", {"PersonId": str(UUID(int=(1 << 8) + n)), "Name": f"Person {n}"}))
    for n in range(2)
] + [(1, ("CreateWorkarea", {"WorkareaId": str(UUID(int=2 << 8)), "Name": "North"}))]
"""Parties and a workarea to start with, so that generated customers and deliveries can refer to them."""


@settings(PROPERTIES, max_examples=250)
@given(st.lists(st.tuples(st.integers(0, 1), ERP_COMMANDS), min_size=15, max_size=40))
def test_the_pipeline_keeps_the_store_consistent_and_the_cache_changes_no_answer(
    steps: list[tuple[int, tuple[str, dict[str, Any]]]],
) -> None:
    """Any sequence of ERP commands, through CommandService:

    * a refused command (or a stale ExpectedRevision) stores nothing;
    * an accepted one answers the stream's new revision and each stream type's last SequenceNumber,
      with a token that reads back as those positions;
    * a customer's OpenAmount is always what its open orders add up to;
    * two API processes, each with its own stream cache (one of them tiny), on one store, answer
      exactly what one process without a cache answers, and store exactly the same events;
    * every amount stored has two decimals ("10.00"), however the command spelled it.
    """
    reference = MemoryEventStore()
    plain = service(reference)
    shared = MemoryEventStore()
    # One cache as configured, one so small that streams are evicted, refused as too big, and
    # evicted by their own account's share all the time.
    processes = [service(shared, StreamCache()), service(shared, StreamCache(12_000, account_share=0.5))]

    async def scenario() -> None:
        for process, (name, fields) in [*SETUP, *steps]:
            before = snapshot(reference)
            outcome = await execute(plain, name, fields)
            assert await execute(processes[process], name, fields) == outcome, (name, fields)
            after = snapshot(reference)
            if outcome[0] != "ok":
                assert after == before, f"{name} was refused ({outcome[0]}) but stored events"
            else:
                stream_id, revision, positions, token = outcome[1]
                assert revision == len(reference.streams(ACCOUNT)[stream_id])
                assert set(before) < set(after), f"{name} was accepted but changed or added nothing"
                assert positions == {t: reference.sequences(ACCOUNT)[t] for t in positions}
                assert decode_token(token) == positions
            for customer_id, amount in open_amounts(reference).items():
                customer = stored(reference, "Customer", customer_id)
                assert Decimal(customer.state.get("OpenAmount") or 0) == amount, customer_id
        assert snapshot(shared) == snapshot(reference)
        for events in reference.streams(ACCOUNT).values():
            for event in events:
                for amount in amounts(event.payload):
                    assert NORMAL_MONEY.fullmatch(amount), (event.name, event.payload)

    run(scenario())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def shaped(name: str) -> st.SearchStrategy[Any]:
    """Objects with the command's own field names (and a few others), holding any JSON."""
    fields = list(msgspec.json.schema(COMMANDS[name].message)["$defs"][name]["properties"])
    return st.dictionaries(st.sampled_from([*fields, "Extra", "orderid"]), JSON, max_size=len(fields) + 1)


@PROPERTIES
@given(st.sampled_from(sorted(COMMANDS)).flatmap(lambda n: st.tuples(st.just(n), JSON | shaped(n))))
def test_parsing_any_json_returns_a_command_or_refuses_it(named: tuple[str, Any]) -> None:
    """For any JSON body: a command (the same one every time), MalformedCommand or InvalidCommand."""
    name, value = named
    body = json.dumps(value, allow_nan=True).encode()
    service = parser()
    try:
        parsed = service.parse(name, body)
    except (MalformedCommand, InvalidCommand) as refusal:
        assert str(refusal).strip()
        return
    assert parsed.spec.name == name
    again = service.parse(name, msgspec.json.encode(parsed.message))
    assert again.message == parsed.message
    assert again.request_hash == parsed.request_hash


@PROPERTIES
@given(st.sampled_from(sorted(COMMANDS)), st.binary(max_size=64))
def test_parsing_any_bytes_returns_a_command_or_refuses_it(name: str, body: bytes) -> None:
    with contextlib.suppress(MalformedCommand, InvalidCommand):
        parser().parse(name, body)


# ---------------------------------------------------------------------------------------------
# consistency tokens

STREAM_TYPES = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,99}\Z")
# SequenceNumbers are bigint, but a token carries at most 18 digits (10**18 events per stream type
# is out of reach: 30,000 years at a million events a second).
POSITIONS = st.integers(min_value=0, max_value=10**18 - 1)


@PROPERTIES
@given(st.dictionaries(STREAM_TYPES, POSITIONS, min_size=1, max_size=6))
def test_a_token_reads_back_as_the_positions_it_was_made_of(positions: dict[str, int]) -> None:
    token = encode_token(positions)
    assert decode_token(token) == positions
    assert encode_token(decode_token(token)) == token


@PROPERTIES
@given(
    st.text(max_size=60)
    | st.lists(st.tuples(STREAM_TYPES, POSITIONS)).map(lambda p: ",".join(f"{t}:{n}" for t, n in p))
)
def test_any_text_is_a_token_or_invalid(text: str) -> None:
    """Never another exception; a repeated stream type counts with its highest position."""
    try:
        positions = decode_token(text)
    except InvalidToken as error:
        assert str(error)
        return
    assert positions
    assert decode_token(encode_token(positions)) == positions
    for part in text.split(","):
        stream_type, position = part.strip().split(":")
        assert positions[stream_type] >= int(position)


# ---------------------------------------------------------------------------------------------
# upcasters


def rename(renames: bool, version: int) -> str:
    return f"Thing{version}" if renames else "Thing"


@PROPERTIES
@given(
    first=st.integers(0, 5),
    renames=st.lists(st.booleans(), max_size=6),
    start=st.integers(0, 7),
    payload=st.dictionaries(st.sampled_from("ABC"), st.integers(), max_size=3),
)
def test_upcasting_applies_every_step_from_the_stored_version_on_in_order(
    first: int, renames: list[bool], start: int, payload: dict[str, int]
) -> None:
    """A chain of steps (versions first, first + 1, ...), each possibly renaming the event: a payload
    stored at any version and name along the chain gets exactly the steps after it, in order."""
    upcasters = Upcasters()
    names = ["Thing"]  # names[k]: the event's name at version first + k
    for k, renamed in enumerate(renames):
        names.append(f"Thing{first + k + 1}" if renamed else names[-1])
    for k in range(len(renames)):
        version, old, new = first + k, names[k], names[k + 1]

        def step(
            stored: dict[str, Any], version: int = version, new: str = new
        ) -> tuple[str, dict[str, Any]]:
            return new, {**stored, "Applied": [*stored.get("Applied", []), version]}

        upcasters.register(old, version, step)
        upcasters.register(f"Other{old}", version, lambda p: ("Other", {"Wrong": True}))

    k = start - first
    name = names[k] if 0 <= k < len(names) else "Thing"
    [(upcast_name, upcast_payload)] = upcasters.upcast(name, start, dict(payload))
    expected = list(range(start, first + len(renames))) if 0 <= k < len(names) else []
    assert upcast_payload.pop("Applied", []) == expected
    assert upcast_payload == payload
    assert upcast_name == (names[-1] if expected else name)


@PROPERTIES
@given(st.text(max_size=10), st.integers(0, 5))
def test_an_upcaster_is_registered_once_per_name_and_version(name: str, version: int) -> None:
    upcasters = Upcasters()
    upcasters.register(name, version, lambda p: (name, p))
    with pytest.raises(ValueError, match="already registered"):
        upcasters.register(name, version, lambda p: (name, p))
    assert upcasters.upcast(name, version + 1, {"A": 1}) == [(name, {"A": 1})]
