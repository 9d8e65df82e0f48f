"""Personal data sealed with its subject's key and erased by deleting it, against the real Postgres
and Redis: nothing personal at rest in the clear, every read path opening it, an erasure that shows
as null on every read path (loads, the projector, a blue/green rebuild, an export) and touches no
other subject or account, erasing twice, and processes that forget an erased key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import replace
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from commands.customisation import CustomAttribute
from commands.erp_model import ERP, UPCASTERS
from commands.errors import BusinessRuleViolation, StreamNotFound
from commands.service import CommandResult, CommandService
from commands.store.event_store import ConcurrencyConflict, EventStore, PendingEvent, StreamWrite
from commands.store.export import export_events, plan_export
from commands.store.feed import EventFeed
from commands.store.sealing import ENTRY_BYTES, SEALED, Sealing, SubjectKeys
from commands.store.upcasting import Upcasters
from core.settings import Settings
from erp.bootstrap import Container
from erp.devserver import drop_database
from queries.blue_green import Build
from queries.projector import Projector
from queries.registry import PROJECTIONS
from tenancy.catalog import AccountCatalog
from tenancy.fences import LEAVING, AccountElsewhere, fence, lift
from tenancy.moving import AccountMover, MoveStep
from tenancy.routing import Databases
from tests.conftest import fresh_database, make_account
from tests.integration.erp_history import erp_history, read_models
from tests.integration.test_event_store import metadata

pytestmark = pytest.mark.timeout(120)


def sealed_store(keys: SubjectKeys | None = None) -> EventStore:
    return EventStore(UPCASTERS, sealing=Sealing(ERP.personal, keys))


async def run(service: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> CommandResult:
    return await service.execute(account_id, service.parse(command, json.dumps(body).encode()))


class Person:
    """A person with personal data no other test writes: a name, an email and an address."""

    def __init__(self) -> None:
        self.id = uuid.uuid4()
        tag = uuid.uuid4().hex[:10]
        self.name = f"Zebulon {tag}"
        self.new_name = f"Zebulon Renamed {tag}"
        self.email = f"z.{tag}@example.test"
        self.street = f"{tag} Forgotten Lane"
        self.stream_id = f"Person-{self.id}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.name, self.new_name, self.email, self.street)

    async def register(self, service: CommandService, account_id: UUID) -> None:
        body = {"PersonId": str(self.id), "Name": self.name, "Email": self.email}
        await run(service, account_id, "RegisterPerson", body)
        await run(service, account_id, "RenamePerson", {"PersonId": str(self.id), "Name": self.new_name})
        address = {"Kind": "Home", "Street": self.street, "City": "Leeds", "Country": "GB"}
        await run(service, account_id, "ChangeAddress", {"PartyId": str(self.id), "Address": address})


async def stored_text(pool: asyncpg.Pool[Any], account_id: UUID) -> str:
    rows = await pool.fetch("SELECT payload::text FROM events WHERE account_id = $1", account_id)
    return "\n".join(r[0] for r in rows)


async def person_row(pool: asyncpg.Pool[Any], account_id: UUID, person: Person) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT name, email, addresses, status FROM rm_person WHERE account_id = $1 AND id = $2",
        account_id,
        person.id,
    )
    assert row is not None
    return row


async def catch_up(pool: asyncpg.Pool[Any], feed: EventFeed) -> None:
    for projection in PROJECTIONS.values():
        await Projector(pool, projection, feed).catch_up()


async def test_personal_fields_are_stored_sealed_and_every_reader_opens_them(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    store = sealed_store()
    service = CommandService(pool, store)
    person = Person()
    await person.register(service, account_id)

    known, _ = store.feed.sealing.keys.cached((account_id, person.stream_id))
    assert known, "the key made for the append is remembered once it committed"
    stored = await stored_text(pool, account_id)
    assert SEALED in stored and str(person.id) in stored
    assert not [s for s in person.secrets if s in stored], "personal data at rest in the clear"
    loaded = await store.load(pool, account_id, person.stream_id)
    assert [e.payload.get("Name") for e in loaded] == [person.name, person.new_name, None]
    assert loaded[0].payload["Email"] == person.email
    assert loaded[2].payload["Address"]["Street"] == person.street
    # A reader of another process (a feed with no cache of its own yet) opens them too.
    fresh = await EventFeed(UPCASTERS).stream(pool, account_id, person.stream_id)
    assert [e.payload for e in fresh] == [e.payload for e in loaded]
    key = await pool.fetchval(
        "SELECT key FROM subject_keys WHERE account_id = $1 AND subject = $2", account_id, person.stream_id
    )
    assert len(key) == 32


async def test_an_erasure_shows_on_every_read_path_and_touches_no_other_subject_or_account(
    own_pool: asyncpg.Pool[Any],
) -> None:
    pool = own_pool
    store = sealed_store()
    service = CommandService(pool, store)
    account_id, other_account = await make_account(pool), await make_account(pool)
    for n, account in enumerate((account_id, other_account)):
        await erp_history(service, account, rounds=2, seed=n)
    erased, kept, elsewhere = Person(), Person(), Person()
    await erased.register(service, account_id)
    await kept.register(service, account_id)
    await elsewhere.register(service, other_account)
    workarea = str(uuid.uuid4())
    await run(service, account_id, "CreateWorkarea", {"WorkareaId": workarea, "Name": "South"})
    customer = {"CustomerId": str(uuid.uuid4()), "PartyId": str(erased.id), "WorkareaId": workarea}
    await run(service, account_id, "MakeCustomer", {**customer, "SpendingLimit": "10.00"})
    await catch_up(pool, store.feed)
    assert (await person_row(pool, account_id, erased))["name"] == erased.new_name

    first = await run(service, account_id, "ErasePerson", {"PersonId": str(erased.id)})
    again = await run(service, account_id, "ErasePerson", {"PersonId": str(erased.id)})
    assert again == first, "erasing twice answers as the first time"
    await catch_up(pool, store.feed)

    # Loads, from this process and from a fresh one.
    for feed in (store.feed, EventFeed(UPCASTERS)):
        events = await feed.stream(pool, account_id, erased.stream_id)
        assert [e.name for e in events][-1] == "PersonErased"
        assert all(e.payload.get(f) is None for e in events for f in ("Name", "Email", "Address"))
        others = await feed.stream(pool, account_id, kept.stream_id)
        assert (
            others[0].payload["Name"] == kept.name and others[2].payload["Address"]["Street"] == kept.street
        )
        elsewhere_events = await feed.stream(pool, other_account, elsewhere.stream_id)
        assert elsewhere_events[1].payload["Name"] == elsewhere.new_name
    # The live read models: cleared, the key gone, the erasure on record.
    row = await person_row(pool, account_id, erased)
    assert (row["name"], row["email"], row["addresses"], row["status"]) == (None, None, None, "Erased")
    assert (await person_row(pool, account_id, kept))["name"] == kept.new_name
    assert (await person_row(pool, other_account, elsewhere))["email"] == elsewhere.email
    record = await pool.fetchrow(
        "SELECT key, erased_at FROM subject_keys WHERE account_id = $1 AND subject = $2",
        account_id,
        erased.stream_id,
    )
    assert record["key"] is None and record["erased_at"] is not None
    names = await pool.fetch("SELECT party_name FROM rm_customer WHERE account_id = $1", account_id)
    assert erased.new_name not in {r[0] for r in names}
    # A blue/green rebuild of the read model, from the events alone, comes out the same.
    live = await read_models(pool)
    build = await Build.prepare(pool, PROJECTIONS["customers"], EventFeed(UPCASTERS))
    await build.bulk_pass()
    await build.catch_up()
    await build.switch()
    assert await read_models(pool) == live
    # The export shows the erased fields as null, and the kept ones.
    plan = await plan_export(pool, account_id)
    exported = [e async for chunk in export_events(pool, EventFeed(UPCASTERS), plan) for e in chunk]
    text = json.dumps([e.payload for e in exported])
    assert not [s for s in erased.secrets if s in text]
    assert kept.name in text and kept.street in text
    # Every other command on the erased person is refused; nothing is sealed for it again.
    with pytest.raises(BusinessRuleViolation, match="erased"):
        await run(service, account_id, "RenamePerson", {"PersonId": str(erased.id), "Name": "Back"})
    with pytest.raises(BusinessRuleViolation, match="erased"):
        address = {"Kind": "Home", "Street": "x", "City": "y", "Country": "GB"}
        await run(service, account_id, "ChangeAddress", {"PartyId": str(erased.id), "Address": address})
    with pytest.raises(BusinessRuleViolation, match="erased"):
        another = {"CustomerId": str(uuid.uuid4()), "PartyId": str(erased.id), "WorkareaId": workarea}
        await run(service, account_id, "MakeCustomer", {**another, "SpendingLimit": "1.00"})


async def test_erasing_an_unknown_subject_or_another_accounts_is_not_found_and_changes_nothing(
    pool: asyncpg.Pool[Any],
) -> None:
    service = CommandService(pool, sealed_store())
    account_id, other_account = await make_account(pool), await make_account(pool)
    theirs = Person()
    await theirs.register(service, other_account)
    for person_id in (uuid.uuid4(), theirs.id):
        with pytest.raises(StreamNotFound):
            await run(service, account_id, "ErasePerson", {"PersonId": str(person_id)})
    # Erasing an organisation's contact data by ErasePerson is not found either.
    organisation = uuid.uuid4()
    await run(
        service, account_id, "RegisterOrganisation", {"OrganisationId": str(organisation), "Name": "Acme"}
    )
    with pytest.raises(StreamNotFound):
        await run(service, account_id, "ErasePerson", {"PersonId": str(organisation)})
    loaded = await EventFeed(UPCASTERS).stream(pool, other_account, theirs.stream_id)
    assert loaded[0].payload["Name"] == theirs.name
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM subject_keys WHERE erased_at IS NOT NULL AND account_id = ANY($1)",
            [account_id, other_account],
        )
        == 0
    )


async def test_a_refused_erasure_keeps_the_key_and_a_command_decided_before_it_is_decided_again(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    store = sealed_store()
    service = CommandService(pool, store)
    person = Person()
    await person.register(service, account_id)
    erasure = PendingEvent("PersonErased", {"PersonId": str(person.id)})
    stale = StreamWrite(person.stream_id, "Person", 1, [erasure])  # the stream is at 3
    with pytest.raises(ConcurrencyConflict):
        await store.append(pool, account_id, [stale], metadata())
    loaded = await EventFeed(UPCASTERS).stream(pool, account_id, person.stream_id)
    assert loaded[1].payload["Name"] == person.new_name, "the refused erasure deleted the key"

    # A process whose cached state predates the erasure: its rename is decided again, and refused.
    other = sealed_store()
    late = CommandService(pool, other)
    await other.load(pool, account_id, person.stream_id)  # its key cache knows the key
    await run(service, account_id, "ErasePerson", {"PersonId": str(person.id)})
    rename = StreamWrite(
        person.stream_id, "Person", 3, [PendingEvent("Renamed", {"PersonId": str(person.id), "Name": "Late"})]
    )
    with pytest.raises(ConcurrencyConflict):
        await other.append(pool, account_id, [rename], metadata())
    with pytest.raises(BusinessRuleViolation, match="erased"):
        await run(late, account_id, "RenamePerson", {"PersonId": str(person.id), "Name": "Late"})
    assert "Late" not in await stored_text(pool, account_id)


async def test_concurrent_erasures_and_renames_leave_nothing_readable(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """Many processes rename a person while two erase it: whatever order they commit in, after the
    erasure nothing of the person reads back, and only the erasure's answer repeats."""
    person = Person()
    await person.register(CommandService(pool, sealed_store()), account_id)
    services = [CommandService(pool, sealed_store()) for _ in range(6)]

    async def rename(service: CommandService, n: int) -> None:
        await asyncio.sleep(n * 0.003)
        with contextlib.suppress(BusinessRuleViolation):
            await run(
                service,
                account_id,
                "RenamePerson",
                {"PersonId": str(person.id), "Name": f"{person.name} {n}"},
            )

    async def erase(service: CommandService) -> CommandResult:
        await asyncio.sleep(0.01)
        return await run(service, account_id, "ErasePerson", {"PersonId": str(person.id)})

    results = await asyncio.gather(
        *(rename(s, n) for n, s in enumerate(services * 3)), erase(services[0]), erase(services[1])
    )
    first, second = results[-2:]
    assert first == second
    events = await EventFeed(UPCASTERS).stream(pool, account_id, person.stream_id)
    assert events[-1].name == "PersonErased"
    assert all(e.payload.get("Name") is None for e in events)
    assert not [s for s in person.secrets if s in json.dumps([e.payload for e in events])]


async def test_every_process_forgets_an_erased_key_within_seconds(
    settings: Settings, account_id: UUID
) -> None:
    """Two processes (each a container: its own key cache, listening on Redis), keys cached for an
    hour: the one that did not erase stops opening the person's data as soon as it hears."""
    slow = replace(settings, subject_key_ttl=3600.0)
    async with (
        Container(slow, min_pool=1, max_pool=2).running() as eraser,
        Container(slow, min_pool=1, max_pool=2).running() as bystander,
        eraser.forgetting_keys(),
        bystander.forgetting_keys(),
    ):
        pool = bystander.databases.main
        person = Person()
        await person.register(CommandService(pool, eraser.store), account_id)
        loaded = await bystander.store.load(pool, account_id, person.stream_id)
        assert loaded[0].payload["Name"] == person.name  # the bystander caches the key
        assert len(bystander.sealing.keys) >= 1
        await asyncio.sleep(0.3)  # both subscribed
        await run(
            CommandService(eraser.databases.main, eraser.store),
            account_id,
            "ErasePerson",
            {"PersonId": str(person.id)},
        )
        for _ in range(50):
            if not bystander.sealing.keys.cached((account_id, person.stream_id))[0]:
                break
            await asyncio.sleep(0.1)
        loaded = await bystander.store.load(pool, account_id, person.stream_id)
        assert loaded[0].payload["Name"] is None, "the bystander still opens an erased subject's data"


async def test_a_key_cache_is_bounded_and_entries_expire(pool: asyncpg.Pool[Any], account_id: UUID) -> None:
    keys = SubjectKeys(max_bytes=10 * ENTRY_BYTES, ttl=0.2)
    subjects = [f"Person-{uuid.uuid4()}" for _ in range(25)]
    made_now, made = await keys.sealing(pool, account_id, subjects)
    assert set(made) == set(subjects) and len(keys) == 0, "a key remembered before its events committed"
    again, made_again = await keys.sealing(pool, account_id, subjects)
    assert made_again == {}, "a subject's key made twice"
    assert {s: c.encrypt(b"\0" * 12, b"x", None) for s, c in again.items()} == {
        s: c.encrypt(b"\0" * 12, b"x", None) for s, c in made_now.items()
    }
    assert len(keys) == 10, "more keys cached than the bound allows"
    assert keys.cached((account_id, subjects[-1]))[0]
    await asyncio.sleep(0.3)
    assert not keys.cached((account_id, subjects[-1]))[0], "a key outlived its ttl"


async def test_with_sealing_off_new_events_are_stored_in_the_clear_and_sealed_ones_still_open(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    sealed, clear = Person(), Person()
    await sealed.register(CommandService(pool, sealed_store()), account_id)
    off = EventStore(UPCASTERS, sealing=Sealing(ERP.personal, seal=False))
    await clear.register(CommandService(pool, off), account_id)
    stored = await stored_text(pool, account_id)
    assert clear.name in stored and sealed.name not in stored
    loaded = await off.load(pool, account_id, sealed.stream_id)
    assert loaded[0].payload["Name"] == sealed.name
    # Erasure still records the erasure and clears the read model (its events were never sealed).
    service = CommandService(pool, off)
    await run(service, account_id, "ErasePerson", {"PersonId": str(clear.id)})
    assert (await off.load(pool, account_id, clear.stream_id))[-1].name == "PersonErased"


async def test_a_persons_own_attributes_are_sealed_and_erased_with_it(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """The account's own attributes of a data subject may be personal (nothing says they are not):
    sealed like its personal attributes, and cleared by its erasure; an erasure sent with some
    stores none of them."""
    service = CommandService(pool, sealed_store())
    await service.customisations.define(account_id, CustomAttribute("Person", "Birthplace", "string"))
    person, birthplace = Person(), f"Birthplace {uuid.uuid4().hex[:10]}"
    body = {"PersonId": str(person.id), "Name": person.name, "Custom": {"Birthplace": birthplace}}
    await run(service, account_id, "RegisterPerson", body)
    assert birthplace not in await stored_text(pool, account_id)
    await catch_up(pool, EventFeed(UPCASTERS))
    custom = "SELECT custom FROM rm_person WHERE account_id = $1 AND id = $2"
    assert await pool.fetchval(custom, account_id, person.id) == {"Birthplace": birthplace}

    erasure = {"PersonId": str(person.id), "Custom": {"Birthplace": "Sent with the erasure"}}
    await run(service, account_id, "ErasePerson", erasure)
    await catch_up(pool, EventFeed(UPCASTERS))
    assert await pool.fetchval(custom, account_id, person.id) == {}
    events = await EventFeed(UPCASTERS).stream(pool, account_id, person.stream_id)
    assert events[-1].payload == {"PersonId": str(person.id)}
    assert events[0].payload.get("Custom") is None
    assert "Sent with the erasure" not in await stored_text(pool, account_id)


async def test_a_new_subjects_key_is_stored_by_the_append_that_creates_its_stream(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    """No round trip of its own: the key commits with the events or not at all. Two processes that
    register the same person at once: one wins, and the loser's key is nowhere. A key left with no
    stream (an orphan no event uses) is replaced."""
    person = Person()
    stores = [sealed_store(), sealed_store()]
    body = {"PersonId": str(person.id), "Name": person.name, "Email": person.email}
    outcomes = await asyncio.gather(
        *(run(CommandService(pool, s), account_id, "RegisterPerson", body) for s in stores),
        return_exceptions=True,
    )
    assert sum(isinstance(o, CommandResult) for o in outcomes) == 1, outcomes
    keys = "SELECT key FROM subject_keys WHERE account_id = $1 AND subject = $2"
    assert len(await pool.fetch(keys, account_id, person.stream_id)) == 1
    loaded = await EventFeed(UPCASTERS).stream(pool, account_id, person.stream_id)
    assert loaded[0].payload["Name"] == person.name

    orphan = Person()
    await pool.execute(
        "SELECT erp_subject_keys($1, ARRAY[$2], ARRAY[$3::bytea], true)",
        account_id,
        orphan.stream_id,
        b"o" * 32,
    )
    await orphan.register(CommandService(pool, sealed_store()), account_id)
    loaded = await EventFeed(UPCASTERS).stream(pool, account_id, orphan.stream_id)
    assert [e.payload.get("Name") for e in loaded] == [orphan.name, orphan.new_name, None]
    assert await pool.fetchval(keys, account_id, orphan.stream_id) != b"o" * 32


async def test_an_erasure_held_behind_a_refused_event_clears_the_read_model_and_no_reason_holds_data(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A person's event the read model refuses is parked, and the person's later events are held
    behind it; the erasure among them still clears the row at once, and neither the stored reason
    nor its log line carries the values Postgres's DETAIL would show."""
    pool = own_pool
    store = sealed_store()
    service = CommandService(pool, store)
    account_id = await make_account(pool)
    person = Person()
    body = {"PersonId": str(person.id), "Name": person.name, "Email": person.email}
    await run(service, account_id, "RegisterPerson", body)
    await pool.execute(
        "ALTER TABLE rm_person ADD CONSTRAINT poison "
        "CHECK (addresses IS NULL OR addresses::text NOT LIKE '%Forgotten%')"
    )
    address = {"Kind": "Home", "Street": person.street, "City": "Leeds", "Country": "GB"}
    await run(service, account_id, "ChangeAddress", {"PartyId": str(person.id), "Address": address})
    await catch_up(pool, store.feed)
    reasons = await pool.fetch("SELECT reason FROM parked_events WHERE account_id = $1", account_id)
    assert reasons and not [s for s in person.secrets if s in "".join(r[0] for r in reasons)], reasons

    await run(service, account_id, "ErasePerson", {"PersonId": str(person.id)})
    await catch_up(pool, store.feed)
    held = await pool.fetch(
        "SELECT payload_item_name FROM parked_events WHERE account_id = $1 AND held_behind IS NOT NULL",
        account_id,
    )
    assert [r[0] for r in held] == ["PersonErased"]
    row = await person_row(pool, account_id, person)
    assert (row["name"], row["email"], row["status"]) == (None, None, "Erased")


async def test_a_move_takes_the_subjects_keys_and_erasures_with_the_account(settings: Settings) -> None:
    """Moved to another database, a person's sealed data still opens there, an erased one's does
    not, and the source keeps no key."""
    main, big = await fresh_database(), await fresh_database()
    both = replace(settings, database_url=main, extra_databases=f"big={big}")
    databases = await Databases(both, min_size=1, max_size=4).open()
    try:
        account_id = await make_account(databases.main)
        service = CommandService(databases.main, sealed_store())
        kept, erased = Person(), Person()
        await kept.register(service, account_id)
        await erased.register(service, account_id)
        await run(service, account_id, "ErasePerson", {"PersonId": str(erased.id)})
        mover = AccountMover(databases, AccountCatalog(databases))
        step = MoveStep(account_id, "main", "big", uuid.uuid4())
        await mover.prepare(step)
        await mover.copy_read_models(step)
        await mover.copy_events(step)
        await mover.fence_source(step)
        await mover.finish_copy(step)
        await mover.switch(step)
        await mover.purge(account_id, "main")
        target = databases.pool("big")
        feed = EventFeed(UPCASTERS)
        moved = await feed.stream(target, account_id, kept.stream_id)
        assert [e.payload.get("Name") for e in moved] == [kept.name, kept.new_name, None]
        gone = await feed.stream(target, account_id, erased.stream_id)
        assert all(e.payload.get("Name") is None for e in gone)
        erasures = "SELECT count(*) FROM subject_keys WHERE account_id = $1 AND key IS NULL"
        assert await target.fetchval(erasures, account_id) == 1
        assert not await databases.main.fetchval(
            "SELECT count(*) FROM subject_keys WHERE account_id = $1", account_id
        )
    finally:
        await databases.close()
        await drop_database(main)
        await drop_database(big)


async def test_a_key_is_not_made_in_a_database_where_a_move_fenced_the_account(
    pool: asyncpg.Pool[Any], account_id: UUID
) -> None:
    keys = SubjectKeys()
    async with pool.acquire() as connection, connection.transaction():
        await fence(connection, account_id, LEAVING, "elsewhere", uuid.uuid4())
    try:
        with pytest.raises(AccountElsewhere):
            await keys.sealing(pool, account_id, [f"Person-{uuid.uuid4()}"])
        assert not await pool.fetchval("SELECT count(*) FROM subject_keys WHERE account_id = $1", account_id)
    finally:
        await lift(pool, account_id)


async def test_a_chunk_that_goes_event_by_event_still_opens_its_sealed_rows(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A bulk-pass chunk an upcaster fails on goes event by event; its sealed rows open with their
    keys there too (not as erased) even when the failing row comes before them."""
    pool = own_pool
    account_id = await make_account(pool)
    person = Person()
    await person.register(CommandService(pool, sealed_store()), account_id)
    await catch_up(pool, EventFeed(UPCASTERS))
    live = await read_models(pool)

    def failing(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise ValueError("an upcaster that fails")

    # A Customer event, read before the Person's in the chunk (pairs in stream type order).
    upcasters = Upcasters()
    upcasters.register("CustomerMade", 1, failing)
    await pool.execute(
        "INSERT INTO events (account_id, stream_id, stream_revision, payload_item_name, payload, "
        "stream_type, sequence_number, command_id, correlation_id, causation_id) "
        "SELECT $1, 'Customer-' || gen_random_uuid(), 1, 'CustomerMade', '{}', 'Customer', 1, "
        "gen_random_uuid(), gen_random_uuid(), gen_random_uuid()",
        account_id,
    )
    await pool.execute(
        "INSERT INTO stream_sequences (account_id, stream_type, last_sequence) VALUES ($1, 'Customer', 1)",
        account_id,
    )
    build = await Build.prepare(pool, PROJECTIONS["customers"], EventFeed(upcasters))
    await build.bulk_pass()
    await build.catch_up()
    await build.switch()
    after = await read_models(pool, ("rm_person",))
    assert after["rm_person"] == live["rm_person"], "the rebuild lost a live subject's data"
