"""The value grammars, without I/O: money and dates strict on the wire, normal when written, lenient
when read back from older events; and Idempotency-Keys compared by their exact text."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from commands.customisation import CustomAttribute
from commands.erp_model import ERP
from commands.errors import InvalidCommand
from commands.handlers import command_specs
from commands.model import (
    MAX_MONEY,
    MONEY_PATTERN,
    Attr,
    ModelAggregate,
    Type,
    money_text,
    parse_date,
    parse_money,
    read_money,
)
from commands.model.values import normal_money
from commands.model.wire import command_struct
from commands.openapi import command_operations
from commands.registry import COMMANDS
from commands.service import CommandService, command_id_for, legacy_command_id
from commands.stream_cache import StreamCache
from commands.unit_of_work import UnitOfWork
from tests.memory_store import NO_SQL, MemoryEventStore

GRAMMAR = settings(max_examples=300, derandomize=True, database=None, deadline=None)
NORMAL = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{2}")
"""Money as every answer and every new event carries it."""

ACCEPTED = ["0", "0.0", "0.00", "10", "10.5", "10.50", "007.50", "999999999999.99", "1000000000000"]
ACCEPTED += ["1000000000000.0", "1000000000000.00", "0001000000000000"]
REFUSED: list[Any] = [
    "1_000",  # an underscore
    " 1 ",  # spaces
    "1 ",
    "\t1",
    "10\n",  # Python's `$` matches before a final newline
    "\uff11\uff12",  # full-width digits
    "\u0661\u0662",  # Arabic-Indic digits
    "1E+3",  # an exponent
    "1e3",
    "9.99E+11",
    "-0",  # a sign
    "-1.00",
    "+1",
    "1.",
    ".5",
    "1.001",
    "1,00",
    "NaN",
    "Infinity",
    "",
    "1000000000000.01",  # over the range
    "1000000000001",
    "10000000000000",
    10,  # JSON numbers
    10.5,
    0,
    True,
    None,
    ["10.00"],
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_money_in_the_grammar_is_taken_as_sent(text: str) -> None:
    assert parse_money(text, "Amount") == Decimal(text)
    assert money_text(parse_money(text, "Amount")) == f"{Decimal(text):.2f}"


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_money_outside_the_grammar_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^SpendingLimit must be an amount of money"):
        parse_money(value, "SpendingLimit")


@GRAMMAR
@given(st.text(alphabet="0123456789.-+eE_ \n\uff11", max_size=16) | st.from_regex(MONEY_PATTERN))
@example("1000000000000.00")
def test_money_is_exactly_the_pattern_and_the_range(text: str) -> None:
    """Whatever text: taken if and only if it is digits with at most two decimals, within the range;
    the pattern (the OpenAPI document's) says the same, except that Python's `$` lets a newline by."""
    plain = re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", text) is not None
    expected = plain and Decimal(text) <= MAX_MONEY
    assert (re.search(MONEY_PATTERN, text) is not None and not text.endswith("\n")) == expected
    try:
        amount = parse_money(text, "Amount")
    except ValueError:
        assert not expected, text
        return
    assert expected, text
    assert NORMAL.fullmatch(money_text(amount)) and Decimal(money_text(amount)) == Decimal(text)


@pytest.mark.parametrize(
    ("stored", "normal"),
    [
        ("1E+3", "1000.00"),
        ("9.99E+11", "999000000000.00"),
        ("-0", "0.00"),
        ("1", "1.00"),
        ("0.1", "0.10"),
        (" 1 ", "1.00"),
        ("1_000", "1000.00"),
        ("\uff11\uff12", "12.00"),
        (12, "12.00"),
        (0.5, "0.50"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("-0.00"), "0.00"),
        ("10.00", "10.00"),
    ],
)
def test_money_stored_by_older_versions_is_read_and_written_normally(stored: Any, normal: str) -> None:
    assert money_text(stored) == normal
    assert read_money(stored) == Decimal(normal)


@GRAMMAR
@given(
    st.text(alphabet="0123456789.-+eE_ \n", max_size=16)
    | st.from_regex(MONEY_PATTERN)
    | st.decimals(allow_nan=False, places=2, min_value=-2 * MAX_MONEY, max_value=2 * MAX_MONEY).map(str)
)
@example("007.5")
@example("-0.00")
@example("1000000000000.00")
@example("1000000000000.01")
def test_the_quick_ways_to_money_text_answer_as_the_slow_one(text: str) -> None:
    """`normal_money` and `money_text` skip building a Decimal for text already in the wire's form
    or the commands' grammar (a thousand-line order holds two thousand amounts): they answer what
    `money_text(read_money(...))` answers, and refuse what it refuses."""
    try:
        slow = money_text(read_money(text))
    except ValueError:
        with pytest.raises(ValueError):
            normal_money(text)
        return
    assert normal_money(text) == slow
    if NORMAL.fullmatch(text) and not text.startswith("-"):
        assert money_text(text) == slow


@pytest.mark.parametrize("stored", ["NaN", "Infinity", "abc", "1E+30", None])
def test_reading_money_refuses_what_is_no_amount(stored: Any) -> None:
    with pytest.raises(ValueError, match="not an amount of money"):
        read_money(stored)


# ---------------------------------------------------------------------------------------------
# dates


@pytest.mark.parametrize("text", ["2024-02-29", "1815-12-10", "0001-01-01", "9999-12-31"])
def test_a_calendar_date_is_a_date(text: str) -> None:
    assert parse_date(text, "Birthday").isoformat() == text


@pytest.mark.parametrize(
    "value",
    [
        "20240229",  # ISO 8601's basic format
        "2024-W01-1",  # a week date
        "2024-060",  # an ordinal date
        "2024-02-30",
        "2023-02-29",
        "2024-2-29",
        "2024-02-29T00:00:00",
        "2024-02-29 ",
        "2024-02-29\n",
        "\uff12\uff10\uff12\uff14-02-29",
        "+2024-02-29",
        20240229,
        None,
    ],
    ids=repr,
)
def test_anything_else_of_iso_8601_is_no_date(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^Birthday must be a date, YYYY-MM-DD"):
        parse_date(value, "Birthday")


def test_a_model_date_attribute_takes_calendar_dates_only() -> None:
    """msgspec's `date` already is strict: the model's date attributes need nothing more."""
    struct = command_struct("SetBirthday", (Attr("Birthday", Type.DATE),))
    assert msgspec.json.schema(struct)["$defs"]["SetBirthday"]["properties"]["Birthday"] == {
        "type": "string",
        "format": "date",
    }
    assert str(msgspec.json.decode(b'{"Birthday": "2024-02-29"}', type=struct).birthday) == "2024-02-29"  # type: ignore[attr-defined]
    for text in ("20240229", "2024-W01-1", "2024-02-30"):
        with pytest.raises(msgspec.ValidationError, match="Birthday"):
            msgspec.json.decode(json.dumps({"Birthday": text}).encode(), type=struct)


# ---------------------------------------------------------------------------------------------
# money in commands and events


def parser() -> CommandService:
    return CommandService(None, MemoryEventStore())  # type: ignore[arg-type]


def place_order(unit_price: Any, quantity: int = 1) -> bytes:
    lines = [{"ProductCode": "P", "Quantity": quantity, "UnitPrice": unit_price}]
    return json.dumps({"OrderId": str(uuid.uuid4()), "CustomerName": "Ada", "OrderLines": lines}).encode()


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_a_command_refuses_money_outside_the_grammar_naming_the_field(value: Any) -> None:
    with pytest.raises(InvalidCommand, match="UnitPrice"):
        parser().parse("PlaceOrder", place_order(value))
    body = {"CustomerId": str(uuid.uuid4()), "SpendingLimit": value}
    with pytest.raises(InvalidCommand, match="SpendingLimit"):
        parser().parse("ChangeSpendingLimit", json.dumps(body).encode())


@pytest.mark.parametrize(("sent", "stored"), [("10", "10.00"), ("0.5", "0.50"), ("007", "7.00")])
async def test_money_is_stored_with_two_decimals_however_it_was_sent(sent: str, stored: str) -> None:
    parsed = parser().parse("PlaceOrder", place_order(sent, quantity=3))
    uow = UnitOfWork(NO_SQL, UUID(int=1), MemoryEventStore(), StreamCache())  # type: ignore[arg-type]
    order = await parsed.spec.handler(parsed.message, uow)
    assert isinstance(order, ModelAggregate)
    [event] = order.pending_events()
    assert event.payload["OrderLines"][0]["UnitPrice"] == stored
    assert event.payload["Total"] == f"{Decimal(stored) * 3:.2f}"


def test_a_request_hash_is_the_amount_as_sent() -> None:
    """Commands keep the amount as sent, so a request's hash is what it was before the grammar was
    strict ("10.00" and "10" are two requests, as they were), for retries across that change."""
    service = parser()
    body = place_order("10.00")
    assert service.parse("PlaceOrder", body).request_hash == service.parse("PlaceOrder", body).request_hash
    assert (
        service.parse("PlaceOrder", body).request_hash
        != service.parse("PlaceOrder", body.replace(b'"10.00"', b'"10"')).request_hash
    )


@pytest.mark.parametrize(
    ("stored", "normal"), [("1E+3", "1000.00"), ("-0", "0.00"), ("9.99E+11", "999000000000.00")]
)
def test_an_event_takes_money_an_older_event_held_and_writes_it_normally(stored: str, normal: str) -> None:
    """A rule may copy an amount from state an older event set: the event is raised, in today's form."""
    customer = ERP.aggregates["Customer"](f"Customer-{uuid.uuid4()}")
    event = {"CustomerId": str(uuid.uuid4()), "SpendingLimit": stored}
    customer.raise_event("SpendingLimitChanged", event)
    [raised] = customer.pending_events()
    assert raised.payload["SpendingLimit"] == normal


def test_an_event_still_refuses_what_is_no_amount() -> None:
    customer = ERP.aggregates["Customer"](f"Customer-{uuid.uuid4()}")
    for wrong in ("-1.00", "abc", "1E+30"):
        with pytest.raises(msgspec.ValidationError, match="SpendingLimit"):
            customer.raise_event(
                "SpendingLimitChanged", {"CustomerId": str(uuid.uuid4()), "SpendingLimit": wrong}
            )


# ---------------------------------------------------------------------------------------------
# custom attributes


@pytest.mark.parametrize(("sent", "stored"), [("12", "12.00"), ("12.5", "12.50"), ("0012.50", "12.50")])
def test_custom_money_is_stored_with_two_decimals(sent: str, stored: str) -> None:
    assert CustomAttribute("Person", "Credit", "money").check(sent) == stored


@pytest.mark.parametrize("value", [v for v in REFUSED if v is not None], ids=repr)  # None: not given
def test_custom_money_follows_the_grammar(value: Any) -> None:
    with pytest.raises(InvalidCommand, match=r"^Custom.Credit must be an amount of money"):
        CustomAttribute("Person", "Credit", "money").check(value)


@pytest.mark.parametrize("value", ["20240229", "2024-W01-1", "2024-060", "2024-02-30", 20240229])
def test_custom_dates_are_calendar_dates_only(value: Any) -> None:
    with pytest.raises(InvalidCommand, match=r"^Custom.Birthday must be a date, YYYY-MM-DD"):
        CustomAttribute("Person", "Birthday", "date").check(value)
    assert CustomAttribute("Person", "Birthday", "date").check("2024-02-29") == "2024-02-29"


# ---------------------------------------------------------------------------------------------
# Idempotency-Keys


def test_an_idempotency_key_is_its_exact_text() -> None:
    key = str(uuid.uuid4())
    spellings = [key, key.upper(), f"{{{key}}}", key.replace("-", ""), f"urn:uuid:{key}"]
    ids = [command_id_for(spelling) for spelling in spellings]
    assert all(idempotent for _, idempotent in ids)
    assert len({command_id for command_id, _ in ids}) == len(spellings)
    assert all(command_id != UUID(key) for command_id, _ in ids)
    assert command_id_for(key) == command_id_for(key)
    assert command_id_for("order-17")[0] != command_id_for("order-18")[0]
    assert command_id_for(None)[1] is False


def test_a_key_that_reads_as_a_uuid_keeps_its_old_id_for_lookups_only() -> None:
    """What older versions logged under a UUID key's own value is still found (see CommandService)."""
    key = str(uuid.uuid4())
    assert legacy_command_id(key) == UUID(key)
    assert legacy_command_id(key.upper()) == UUID(key)
    assert legacy_command_id("order-17") is None
    assert legacy_command_id(None) is None


# ---------------------------------------------------------------------------------------------
# the OpenAPI document of commands


def _money_schemas(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, schema) of every property named like an amount."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties":
                for name, schema in value.items():
                    if name in {"UnitPrice", "SpendingLimit", "OpenAmount", "Total", "Amount"}:
                        found.append((f"{path}.{name}", schema))
            found += _money_schemas(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _money_schemas(item, f"{path}[{i}]")
    return found


def test_the_command_operations_declare_money_as_its_pattern() -> None:
    paths, schemas = command_operations(COMMANDS)
    assert '"decimal"' not in json.dumps([paths, schemas])
    money = _money_schemas(schemas)
    assert {path.rsplit(".", 1)[1] for path, _ in money} == {"UnitPrice", "SpendingLimit"}
    for path, schema in money:
        inner = schema.get("anyOf", [schema])[0]
        assert inner["type"] == "string" and inner["pattern"] == MONEY_PATTERN, (path, schema)
        assert "format" not in inner, (path, schema)
    # Every command's Custom is the one shared schema, which says what custom values look like.
    custom = {"anyOf": [{"$ref": "#/components/schemas/Custom"}, {"type": "null"}], "default": None}
    assert all(
        schema["properties"]["Custom"] == custom for name, schema in schemas.items() if name in COMMANDS
    )
    assert "YYYY-MM-DD" in schemas["Custom"]["description"]


def test_every_money_attribute_of_the_model_is_declared_so() -> None:
    """Each command of the model: its money fields (in records too) have the pattern."""
    for name, spec in command_specs(ERP).items():
        schema = msgspec.json.schema(spec.message)
        for _, field in _money_schemas(schema):
            assert field.get("anyOf", [field])[0].get("pattern") == MONEY_PATTERN, name
