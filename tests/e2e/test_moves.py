"""Moving an account to a database of its own, online, under a load of commands sent with
Idempotency-Keys: nothing acknowledged is lost or stored twice, SequenceNumbers and revisions are
kept, consistency tokens issued before the move hold after it, the account's commands wait (503)
only for the few seconds of the switch, and the source keeps no row of the account."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from commands.service import command_id_for
from core.settings import Settings
from tenancy.copying import account_tables
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard, two_databases

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class Moving:
    settings: Settings
    http: httpx.AsyncClient
    """The API: it remembers routes for 30 s."""
    quick: httpx.AsyncClient
    """Another API on the same stack that remembers routes for 1 s (its moves wait 2 s, not 60)."""
    main: asyncpg.Pool[Any]
    big: asyncpg.Pool[Any]

    def pool(self, database: str) -> asyncpg.Pool[Any]:
        return {"main": self.main, "big": self.big}[database]


@pytest.fixture(scope="module")
async def moving(temporal_address: str) -> AsyncIterator[Moving]:
    """An API and a worker with two tenant databases; `big` is dedicated (new accounts never go there)."""
    # The first API's old route outlives a move unless it is told to forget it.
    async with two_databases(temporal_address, "moves", 1.0, cache_ttl=30.0) as stack:
        yield Moving(stack.settings, stack.http, stack.other, stack.main, stack.big)


async def rows_of(pool: asyncpg.Pool[Any], account_id: UUID) -> dict[str, int]:
    """The account's rows in every table that holds accounts' data (the catalog's own left out)."""
    async with pool.acquire() as connection:
        tables = await account_tables(connection)
        counts = {
            t: await connection.fetchval(f"SELECT count(*) FROM {t} WHERE account_id = $1", account_id)
            for t in tables
        }
    return {t: n for t, n in counts.items() if n}


def order(customer_id: str | None = None, *, region: bool = True) -> dict[str, Any]:
    """A PlaceOrder; with `region`, it carries the moving account's own attribute (a customisation)."""
    body: dict[str, Any] = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Mover",
        "OrderLines": [{"ProductCode": "BOX", "Quantity": 1, "UnitPrice": "1.00"}],
    }
    if region:
        body["Custom"] = {"Region": "North"}
    if customer_id is not None:
        body["CustomerId"] = customer_id
    return body


@dataclass
class Load:
    """Clients placing orders, each retried with its Idempotency-Key until answered 200."""

    http: httpx.AsyncClient
    tenant: Tenant
    customer_id: str
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Idempotency-Key -> the 200 answer."""
    waits: list[float] = field(default_factory=list)
    """How long each command waited through 503s before its 200."""
    answers: dict[int, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        first_refusal: float | None = None
        while True:
            headers = {**self.tenant.headers, "Idempotency-Key": key}
            response = await self.http.post("/commands/PlaceOrder", json=body, headers=headers)
            self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
            if response.status_code == 200:
                if first_refusal is not None:
                    self.waits.append(time.monotonic() - first_refusal)
                result: dict[str, Any] = response.json()
                return result
            assert response.headers["content-type"].startswith("application/problem+json")
            if response.status_code == 429:  # over the account's rate limit: not the move's doing
                await asyncio.sleep(0.2)
                continue
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            first_refusal = first_refusal or time.monotonic()
            await asyncio.sleep(0.05)

    async def client(self, n: int) -> None:
        while not self.stop.is_set():
            key = str(uuid.uuid4())
            # One client orders for the customer (an append to two stream types at once); more would
            # race on its stream, and a command that loses ten times in a row is answered 409.
            body = order(self.customer_id if n == 1 else None)
            self.acknowledged[key] = await self.send(key, body)
            if len(self.acknowledged) % 7 == 0:  # a retry of an answered command is answered alike
                assert await self.send(key, body) == self.acknowledged[key]


async def wait_moved(http: httpx.AsyncClient, account_id: UUID, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await http.get(f"/accounts/{account_id}/move", headers=OPERATOR)
        assert response.status_code == 200, response.text
        progress: dict[str, Any] = response.json()
        if progress["Status"] != "Running":
            return progress
        assert time.monotonic() < deadline, f"the move did not end within {within} s: {progress}"
        await asyncio.sleep(0.2)


async def read_orders(http: httpx.AsyncClient, tenant: Tenant, token: str) -> httpx.Response:
    params = {"CustomerName": "Mover", "ConsistentWith": token, "Timeout": "20", "Limit": "1"}
    return await http.get("/queries/GetOrders", params=params, headers=tenant.headers)


async def test_an_account_moves_under_load_and_loses_nothing(moving: Moving) -> None:
    http = moving.http
    tenant, quiet = await onboard(http, "Moving"), await onboard(http, "Staying")
    account_id = tenant.account_id
    assert (
        await moving.main.fetchval("SELECT database FROM accounts WHERE account_id = $1", account_id)
        == "main"
    )

    defined = await http.post(
        "/customisations",
        json={"Element": "Order", "Attribute": "Region", "Type": "string"},
        headers=tenant.headers,
    )
    assert defined.status_code == 201, defined.text
    person, workarea = str(uuid.uuid4()), str(uuid.uuid4())
    customer = str(uuid.uuid4())
    for command, body in (
        ("RegisterPerson", {"PersonId": person, "Name": "Ada Mover"}),
        ("CreateWorkarea", {"WorkareaId": workarea, "Name": "North"}),
        (
            "MakeCustomer",
            {
                "CustomerId": customer,
                "PartyId": person,
                "WorkareaId": workarea,
                "SpendingLimit": "1000000.00",
            },
        ),
    ):
        made = await http.post(f"/commands/{command}", json=body, headers=tenant.headers)
        assert made.status_code == 200, made.text

    load = Load(http, tenant, customer)
    before = [await load.send(str(uuid.uuid4()), order(customer if i % 2 else None)) for i in range(20)]
    token_before = before[-1]["ConsistencyToken"]
    assert (await read_orders(http, tenant, token_before)).status_code == 200
    sequences_before = dict(
        await moving.main.fetch(
            "SELECT stream_type, last_sequence FROM stream_sequences WHERE account_id = $1", account_id
        )
    )

    clients = [asyncio.create_task(load.client(n)) for n in range(6)]
    await asyncio.sleep(1.0)
    moved = await asyncio.to_thread(
        run_cli, moving.settings, "accounts", "move", str(account_id), "--to", "big"
    )
    assert moved.returncode == 0, moved.stderr
    progress = await wait_moved(http, account_id)
    await asyncio.sleep(1.0)  # commands on the new route
    load.stop.set()
    await asyncio.gather(*clients)

    assert progress["Status"] == "Completed", progress
    assert (progress["Phase"], progress["From"], progress["To"]) == ("done", "main", "big")
    assert progress["FencedSeconds"] < 5, progress  # the switch: the only time writes waited
    assert set(load.answers) <= {200, 429, 503}
    assert max(load.waits, default=0.0) < 10, sorted(load.waits)[-5:]
    assert (
        await moving.main.fetchval("SELECT database FROM accounts WHERE account_id = $1", account_id) == "big"
    )

    # The source keeps no row of the account; its fence says where it went.
    assert await rows_of(moving.main, account_id) == {}
    fence = await moving.main.fetchrow(
        "SELECT state, other FROM account_fences WHERE account_id = $1", account_id
    )
    assert fence is not None and (fence["state"], fence["other"]) == ("left", "big")
    assert (
        await moving.big.fetchval("SELECT count(*) FROM account_fences WHERE account_id = $1", account_id)
        == 0
    )

    # Every acknowledged command is stored exactly once, with the answer it was given.
    big = moving.big
    placed = dict(
        await big.fetch(
            "SELECT command_id, count(*) FROM events"
            " WHERE account_id = $1 AND payload_item_name = 'OrderPlaced' GROUP BY command_id",
            account_id,
        )
    )
    everything = {**{str(uuid.uuid4()): b for b in before}, **load.acknowledged}
    assert len(load.acknowledged) > 50
    assert len(placed) == len(everything) and set(placed.values()) == {1}
    logged = await big.fetch("SELECT command_id, result FROM command_log WHERE account_id = $1", account_id)
    results = {r["command_id"]: r["result"] for r in logged}
    for key, answer in load.acknowledged.items():
        result = results[command_id_for(key)[0]]
        assert (result["StreamId"], result["Revision"], result["Positions"]) == (
            answer["StreamId"],
            answer["Revision"],
            answer["Positions"],
        )

    # SequenceNumbers run on from where they were, without gaps; revisions match the events.
    sequences = dict(
        await big.fetch(
            "SELECT stream_type, last_sequence FROM stream_sequences WHERE account_id = $1", account_id
        )
    )
    for stream_type, last in sequences.items():
        assert last >= sequences_before.get(stream_type, 0)
        numbers = await big.fetchval(
            "SELECT count(DISTINCT sequence_number) = max(sequence_number) AND min(sequence_number) = 1"
            " FROM events WHERE account_id = $1 AND stream_type = $2",
            account_id,
            stream_type,
        )
        assert numbers, stream_type
    assert not await big.fetchval(
        "SELECT count(*) FROM streams s WHERE s.account_id = $1 AND s.revision <> ("
        " SELECT max(e.stream_revision) FROM events e"
        " WHERE e.account_id = s.account_id AND e.stream_id = s.stream_id)",
        account_id,
    )

    # A token from before the move holds after it; the read model has every order; commands go on.
    assert (await read_orders(http, tenant, token_before)).status_code == 200
    last_answer = list(load.acknowledged.values())[-1]
    assert (await read_orders(http, tenant, last_answer["ConsistencyToken"])).status_code == 200
    after = await load.send(str(uuid.uuid4()), order(customer))
    assert (await read_orders(http, tenant, after["ConsistencyToken"])).status_code == 200
    assert (
        await big.fetchval("SELECT count(*) FROM rm_order WHERE account_id = $1", account_id)
        == len(everything) + 1
    )
    attributes = await http.get("/customisations", headers=tenant.headers)
    assert [a["Attribute"] for a in attributes.json()] == ["Region"]
    other = await http.post("/commands/PlaceOrder", json=order(region=False), headers=quiet.headers)
    assert other.status_code == 200, other.text


async def test_bad_moves_are_refused_and_change_nothing(moving: Moving) -> None:
    http = moving.http
    tenant = await onboard(http, "Refused")
    path = f"/accounts/{tenant.account_id}/move"
    cases = [
        (f"/accounts/{uuid.uuid4()}/move", {"To": "big"}, OPERATOR, 404, "there is no account"),
        (path, {"To": "nowhere"}, OPERATOR, 422, "there is no tenant database 'nowhere'"),
        (path, {"To": "main"}, OPERATOR, 409, "is in main already"),
        (path, {}, OPERATOR, 422, "To"),
        (path, {"To": "big", "Extra": 1}, OPERATOR, 422, "Extra"),
        (path, {"To": "big"}, tenant.headers, 401, "operator"),
    ]
    for where, body, headers, status, says in cases:
        response = await http.post(where, json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert says in response.json()["detail"], response.json()
    malformed = await http.post(
        path, content=b"{not json", headers={**OPERATOR, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    never = await http.get(path, headers=OPERATOR)
    assert never.status_code == 404 and "has not been moved" in never.json()["detail"]
    assert (
        await moving.main.fetchval("SELECT database FROM accounts WHERE account_id = $1", tenant.account_id)
        == "main"
    )
    for pool in (moving.main, moving.big):
        fences = "SELECT count(*) FROM account_fences WHERE account_id = $1"
        assert await pool.fetchval(fences, tenant.account_id) == 0


async def test_a_move_over_http(moving: Moving) -> None:
    http = moving.quick
    tenant = await onboard(http, "Over HTTP")
    placed = await http.post("/commands/PlaceOrder", json=order(region=False), headers=tenant.headers)
    assert placed.status_code == 200, placed.text
    started = await http.post(f"/accounts/{tenant.account_id}/move", json={"To": "big"}, headers=OPERATOR)
    assert started.status_code == 202, started.text
    body = started.json()
    assert (body["AccountId"], body["From"], body["To"]) == (str(tenant.account_id), "main", "big")
    assert body["WorkflowId"].endswith(f"-move-{tenant.account_id}")
    again = await http.post(f"/accounts/{tenant.account_id}/move", json={"To": "big"}, headers=OPERATOR)
    assert again.status_code == 409 and "moving already" in again.json()["detail"]
    progress = await wait_moved(http, tenant.account_id)
    assert (progress["Status"], progress["Phase"], progress["EventsCopied"]) == ("Completed", "done", 1)
    assert await rows_of(moving.main, tenant.account_id) == {}
    assert (await read_orders(http, tenant, placed.json()["ConsistencyToken"])).status_code == 200
    # The operators' lists (the console's) show where it went, and the move among the operations.
    accounts = (await http.get("/accounts", headers=OPERATOR)).json()
    assert {
        "AccountId": str(tenant.account_id),
        "Name": "Over HTTP",
        "Status": "Active",
        "Database": "big",
    } in accounts
    listed = (await http.get("/operations", headers=OPERATOR)).json()
    move = next(o for o in listed if o["WorkflowId"] == body["WorkflowId"])
    assert (move["Kind"], move["Status"], move["AccountId"], move["From"], move["To"]) == (
        "Move",
        "Completed",
        str(tenant.account_id),
        "main",
        "big",
    ), move
    assert (move["Phase"], move["EventsDone"], move["EventsTotal"]) == ("done", 1, 1), move


async def test_a_cancelled_move_leaves_the_account_where_it_was(moving: Moving) -> None:
    http = moving.quick
    tenant = await onboard(http, "Cancelled")
    for _ in range(30):
        placed = await http.post("/commands/PlaceOrder", json=order(region=False), headers=tenant.headers)
        assert placed.status_code == 200, placed.text
    started = await http.post(f"/accounts/{tenant.account_id}/move", json={"To": "big"}, headers=OPERATOR)
    assert started.status_code == 202, started.text
    client = await Client.connect(moving.settings.temporal_address)
    handle = client.get_workflow_handle(started.json()["WorkflowId"])
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    progress = await wait_moved(http, tenant.account_id)
    assert progress["Status"] == "Canceled", progress
    assert progress["Phase"].startswith("abandoned"), progress
    where = "SELECT database FROM accounts WHERE account_id = $1"
    assert await moving.main.fetchval(where, tenant.account_id) == "main"
    for pool in (moving.main, moving.big):
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM account_fences WHERE account_id = $1", tenant.account_id
            )
            == 0
        )
    assert await rows_of(moving.big, tenant.account_id) == {}
    again = await http.post("/commands/PlaceOrder", json=order(region=False), headers=tenant.headers)
    assert again.status_code == 200, again.text  # it takes writes where it was


def cli_env(settings: Settings) -> dict[str, str]:
    """The CLI's environment: the stack's, except that its moves wait 2 s (twice its cache's
    lifetime) before they remove the old copy, though the API remembers routes for 30 s: the API
    must hear that a route changed."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ERP_DATABASES": settings.extra_databases,
        "ERP_DEDICATED_DATABASES": settings.dedicated_databases,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "ERP_TASK_QUEUE": settings.task_queue,
        "ERP_CACHE_TTL": "1",
        "COLUMNS": "200",
    }


ERP = os.path.join(os.path.dirname(sys.executable), "erp")


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ERP, *args], env=cli_env(settings), capture_output=True, text=True, timeout=180)


async def test_the_cli_moves_an_account_there_and_back(moving: Moving) -> None:
    http = moving.http
    tenant = await onboard(http, "Round trip")
    placed = await http.post("/commands/PlaceOrder", json=order(region=False), headers=tenant.headers)
    assert placed.status_code == 200, placed.text
    token = placed.json()["ConsistencyToken"]

    for there, back in (("big", "main"), ("main", "big")):
        done = await asyncio.to_thread(
            run_cli, moving.settings, "accounts", "move", str(tenant.account_id), "--to", there
        )
        assert done.returncode == 0, done.stderr
        assert f"lives in {there} now" in done.stdout
        assert await rows_of(moving.pool(back), tenant.account_id) == {}
        assert (await rows_of(moving.pool(there), tenant.account_id))["events"] >= 1
        fences = "SELECT state FROM account_fences WHERE account_id = $1"
        assert await moving.pool(there).fetchval(fences, tenant.account_id) is None
        assert await moving.pool(back).fetchval(fences, tenant.account_id) == "left"
        read = await read_orders(http, tenant, token)
        assert read.status_code == 200, read.text
        again = await Load(http, tenant, "").send(str(uuid.uuid4()), order(region=False))
        assert (await read_orders(http, tenant, again["ConsistencyToken"])).status_code == 200

    refused = await asyncio.to_thread(
        run_cli, moving.settings, "accounts", "move", str(tenant.account_id), "--to", "main"
    )
    assert refused.returncode == 2 and "is in main already" in refused.stderr
