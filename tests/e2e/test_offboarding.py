"""Offboarding an account: its keys stop working at once, its events are exported whole (0600), and
afterwards no row of it is left anywhere (tenant tables, their partitions, fences, the catalog),
while another account keeps being answered 200 throughout. Bad requests change nothing, the CLI
offboards with a progress bar, and each step, retried, goes on where it stopped."""

from __future__ import annotations

import asyncio
import json
import stat
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from core.settings import Settings
from erp.bootstrap import Container
from tenancy.offboarding import AccountOffboarder, OffboardStep
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard, two_databases
from tests.e2e.test_moves import run_cli
from workflows.messages import OffboardInput

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

_EVERY_ACCOUNT_TABLE = """
SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND a.attname = 'account_id' AND NOT a.attisdropped
ORDER BY c.relname
"""


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    """An API that remembers keys for 1 s (its offboardings wait 2 s before removing rows)."""
    slow: httpx.AsyncClient
    """Another API that remembers keys for 30 s: it must be told to forget them."""
    main: asyncpg.Pool[Any]
    big: asyncpg.Pool[Any]
    exports: Path


@pytest.fixture(scope="module")
async def stack(temporal_address: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """An API and a worker with two tenant databases (`big` dedicated, for moves), exporting to a
    directory of the module's own, with no command rate limit (every command must be answered 200)."""
    exports = tmp_path_factory.mktemp("exports") / "offboarded"
    async with two_databases(
        temporal_address,
        "offboard",
        30.0,  # the other API must be told to forget keys
        cache_ttl=1.0,
        command_rate=0,
        auth_failures=0,  # the refused keys below all come from 127.0.0.1
        export_dir=str(exports),
    ) as two:
        yield Stack(two.settings, two.http, two.other, two.main, two.big, exports)


async def every_row_of(pool: asyncpg.Pool[Any], account_id: UUID) -> dict[str, int]:
    """The account's rows in every table of the database with an `account_id`: partitions, the
    catalog and the fences included."""
    async with pool.acquire() as connection:
        tables = [r["relname"] for r in await connection.fetch(_EVERY_ACCOUNT_TABLE)]
        counts = {
            t: await connection.fetchval(f'SELECT count(*) FROM "{t}" WHERE account_id = $1', account_id)
            for t in tables
        }
    return {t: n for t, n in counts.items() if n}


def read_file(path: Path) -> tuple[int, bytes]:
    """The file's permission bits and its content."""
    return stat.S_IMODE(path.stat().st_mode), path.read_bytes()


def order(customer_id: str | None = None, *, region: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Leaver",
        "OrderLines": [{"ProductCode": "BOX", "Quantity": 2, "UnitPrice": "3.50"}],
    }
    if customer_id is not None:
        body["CustomerId"] = customer_id
    if region:
        body["Custom"] = {"Region": "South"}
    return body


async def command(http: httpx.AsyncClient, tenant: Tenant, name: str, body: dict[str, Any]) -> str:
    """Send a command that must succeed; its consistency token."""
    response = await http.post(f"/commands/{name}", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    token: str = response.json()["ConsistencyToken"]
    return token


async def populate(http: httpx.AsyncClient, tenant: Tenant, orders: int = 12) -> None:
    """Parties, a customer, a customisation and orders, with read models caught up."""
    defined = await http.post(
        "/customisations",
        json={"Element": "Order", "Attribute": "Region", "Type": "string"},
        headers=tenant.headers,
    )
    assert defined.status_code == 201, defined.text
    person, workarea, customer = (str(uuid.uuid4()) for _ in range(3))
    await command(http, tenant, "RegisterPerson", {"PersonId": person, "Name": "Ada Leaver"})
    await command(http, tenant, "CreateWorkarea", {"WorkareaId": workarea, "Name": "South"})
    await command(
        http,
        tenant,
        "MakeCustomer",
        {"CustomerId": customer, "PartyId": person, "WorkareaId": workarea, "SpendingLimit": "100000.00"},
    )
    token = ""
    for i in range(orders):
        token = await command(http, tenant, "PlaceOrder", order(customer if i % 2 else None, region=True))
    params = {"CustomerName": "Leaver", "ConsistentWith": token, "Timeout": "20"}
    read = await http.get("/queries/GetOrders", params=params, headers=tenant.headers)
    assert read.status_code == 200, read.text
    assert read.json()["Items"]


@dataclass
class Busy:
    """Another account sending commands all along; every answer must be 200."""

    http: httpx.AsyncClient
    tenant: Tenant
    answers: dict[int, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            response = await self.http.post("/commands/PlaceOrder", json=order(), headers=self.tenant.headers)
            self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
            assert response.status_code == 200, response.text


async def wait_offboarded(http: httpx.AsyncClient, account_id: UUID, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await http.get(f"/accounts/{account_id}/offboard", headers=OPERATOR)
        assert response.status_code == 200, response.text
        progress: dict[str, Any] = response.json()
        if progress["Status"] != "Running":
            return progress
        assert time.monotonic() < deadline, f"the offboarding did not end within {within} s: {progress}"
        await asyncio.sleep(0.2)


async def test_an_account_is_offboarded_and_nothing_of_it_remains(stack: Stack) -> None:
    http = stack.http
    leaving, busy_tenant, quiet = [await onboard(http, name) for name in ("Leaving", "Busy", "Quiet")]
    await populate(http, leaving)
    await populate(http, quiet, orders=3)
    account_id = leaving.account_id
    events = await stack.main.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id)
    held = await every_row_of(stack.main, account_id)
    assert events > 12 and held["rm_order"] == 12 and held["customisations"] == 1, held
    assert held["projection_checkpoints"] and held["api_keys"] == 1 and held["accounts"] == 1, held
    quiet_before = await every_row_of(stack.main, quiet.account_id)
    # The slow API remembers the key (for 30 s): offboarding must make it forget.
    assert (await stack.slow.get("/customisations", headers=leaving.headers)).status_code == 200

    busy = Busy(http, busy_tenant)
    client = asyncio.create_task(busy.run())
    await asyncio.sleep(0.5)
    # A body is not expected, and not read.
    started = await http.post(f"/accounts/{account_id}/offboard", json={"Ignored": 1}, headers=OPERATOR)
    assert started.status_code == 202, started.text
    body = started.json()
    assert (body["AccountId"], body["Database"]) == (str(account_id), "main")
    assert body["WorkflowId"].endswith(f"-offboard-{account_id}")
    again = await http.post(f"/accounts/{account_id}/offboard", headers=OPERATOR)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    assert "offboarding already" in again.json()["detail"]

    progress = await wait_offboarded(http, account_id)
    await asyncio.sleep(0.5)
    busy.stop.set()
    await client
    assert progress["Status"] == "Completed", progress
    assert progress["Phase"] == "done" and progress["EventsExported"] == events, progress
    assert set(busy.answers) == {200} and busy.answers[200] > 10, busy.answers

    # The export holds every event of the account, and only its owner may read it.
    export = Path(progress["Export"])
    assert export == (stack.exports / f"{account_id}.jsonl").resolve()
    mode, content = await asyncio.to_thread(read_file, export)
    assert mode == 0o600
    lines = [json.loads(line) for line in content.splitlines()]
    assert len(lines) == events
    assert {line["AccountId"] for line in lines} == {str(account_id)}
    assert sum(line["Name"] == "OrderPlaced" for line in lines) == 12
    assert [p.name for p in stack.exports.iterdir()] == [export.name]  # no partial file left

    # No row of it remains: not in the tenant tables (partitions included), fences or the catalog.
    assert await every_row_of(stack.main, account_id) == {}
    assert await every_row_of(stack.big, account_id) == {}
    counts = await stack.main.fetchval("SELECT accounts FROM account_counts WHERE database = 'main'")
    assert counts == await stack.main.fetchval("SELECT count(*) FROM accounts WHERE database = 'main'")

    # Its key is refused by both APIs; the others' data is untouched, and they go on.
    for api in (http, stack.slow):
        response = await api.post("/commands/PlaceOrder", json=order(), headers=leaving.headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    gone = await http.get(f"/accounts/{account_id}", headers=OPERATOR)
    assert gone.status_code == 404
    assert await every_row_of(stack.main, quiet.account_id) == quiet_before
    busy_orders = await stack.main.fetchval(
        "SELECT count(*) FROM events WHERE account_id = $1 AND payload_item_name = 'OrderPlaced'",
        busy_tenant.account_id,
    )
    assert busy_orders == busy.answers[200]
    await command(http, quiet, "PlaceOrder", order())


async def test_bad_offboardings_are_refused_and_change_nothing(stack: Stack) -> None:
    http = stack.http
    tenant = await onboard(http, "Staying")
    await command(http, tenant, "PlaceOrder", order())
    before = await every_row_of(stack.main, tenant.account_id)
    path = f"/accounts/{tenant.account_id}/offboard"
    onboarding = uuid.uuid4()
    await stack.main.execute(
        "INSERT INTO accounts (account_id, name, status) VALUES ($1, 'Half', 'Onboarding')", onboarding
    )
    cases = [
        (f"/accounts/{uuid.uuid4()}/offboard", OPERATOR, 404, "there is no account"),
        (f"/accounts/{onboarding}/offboard", OPERATOR, 409, "is Onboarding"),
        (path, tenant.headers, 401, "operator"),
        (path, {"Authorization": "Bearer wrong"}, 401, "operator"),
    ]
    for where, headers, status, says in cases:
        response = await http.post(where, headers=headers)
        assert response.status_code == status, (where, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert says in response.json()["detail"], response.json()
    assert (await http.post("/accounts/not-a-uuid/offboard", headers=OPERATOR)).status_code in (400, 404)
    never = await http.get(path, headers=OPERATOR)
    assert never.status_code == 404 and "has not been offboarded" in never.json()["detail"]

    # A moving account cannot go until its move has ended.
    moved = await http.post(f"/accounts/{tenant.account_id}/move", json={"To": "big"}, headers=OPERATOR)
    assert moved.status_code == 202, moved.text
    refused = await http.post(path, headers=OPERATOR)
    assert refused.status_code == 409 and "is moving" in refused.json()["detail"], refused.text
    deadline = time.monotonic() + 60
    while (await http.get(f"/accounts/{tenant.account_id}/move", headers=OPERATOR)).json()[
        "Status"
    ] == "Running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)

    status = "SELECT status FROM accounts WHERE account_id = $1"
    assert await stack.main.fetchval(status, tenant.account_id) == "Active"
    assert await stack.main.fetchval(status, onboarding) == "Onboarding"
    assert await every_row_of(stack.big, tenant.account_id) != {}
    assert "api_keys" in await every_row_of(stack.main, tenant.account_id)
    assert (await stack.main.fetchval(
        "SELECT count(*) FROM events WHERE account_id = $1", tenant.account_id
    )) == 0 and before["events"] == 1  # fmt: skip
    assert not list(stack.exports.glob(f"{tenant.account_id}*"))
    await command(http, tenant, "PlaceOrder", order())  # it takes commands where it moved to

    # ... then it can go, from where it lives now; the move's tombstone in main goes too.
    started = await http.post(path, headers=OPERATOR)
    assert started.status_code == 202, started.text
    assert started.json()["Database"] == "big"
    progress = await wait_offboarded(http, tenant.account_id)
    assert progress["Status"] == "Completed" and progress["EventsExported"] == 2, progress
    assert await every_row_of(stack.main, tenant.account_id) == {}
    assert await every_row_of(stack.big, tenant.account_id) == {}


async def test_the_cli_offboards_an_account(stack: Stack) -> None:
    http = stack.http
    tenant = await onboard(http, "By the CLI")
    for _ in range(3):
        await command(http, tenant, "PlaceOrder", order())
    done = await asyncio.to_thread(run_cli, stack.settings, "accounts", "offboard", str(tenant.account_id))
    assert done.returncode == 0, done.stderr
    export = (stack.exports / f"{tenant.account_id}.jsonl").resolve()
    assert f"its 3 events are in {export}" in done.stdout, done.stdout
    assert f"offboarding {tenant.account_id} from main" in done.stderr
    assert "done" in done.stderr  # the progress bar's last phase
    assert await every_row_of(stack.main, tenant.account_id) == {}
    assert (await http.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)).status_code == 401

    accounts = "SELECT count(*) FROM accounts"
    before = await stack.main.fetchval(accounts)
    for argument, says in ((str(uuid.uuid4()), "there is no account"), ("not-an-id", "must be an AccountId")):
        refused = await asyncio.to_thread(run_cli, stack.settings, "accounts", "offboard", argument)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr, refused.stderr
    assert await stack.main.fetchval(accounts) == before


async def test_each_step_retried_goes_on_where_it_stopped(stack: Stack) -> None:
    """The steps run twice (as a retried activity does) give the same result: the same file, no
    error, nothing left."""
    http = stack.http
    tenant = await onboard(http, "Retried")
    await populate(http, tenant, orders=5)
    account_id = tenant.account_id
    events = await stack.main.fetchval("SELECT count(*) FROM events WHERE account_id = $1", account_id)
    async with Container(stack.settings, min_pool=1, max_pool=4).running() as container:
        offboarder = AccountOffboarder(container.databases, container.catalog, container.invalidations)
        step = OffboardStep(account_id, "main", uuid.uuid4())
        data = OffboardInput(
            str(account_id), "main", str(step.offboard_id), container.temporal.deployment.name, 1.0
        )
        activities = container.activities()
        env = ActivityEnvironment()

        await offboarder.revoke(step)
        await offboarder.revoke(step)
        fence = "SELECT state, other FROM account_fences WHERE account_id = $1"
        assert tuple(await stack.main.fetchrow(fence, account_id) or ()) == ("left", "offboarded")
        refused = await http.post("/commands/PlaceOrder", json=order(), headers=tenant.headers)
        assert refused.status_code in (401, 503), refused.text

        first = await env.run(activities.export_account, data)
        _, written = await asyncio.to_thread(read_file, Path(first.path))
        second = await env.run(activities.export_account, data)
        assert (second.path, second.events) == (first.path, first.events) and first.events == events
        assert (await asyncio.to_thread(read_file, Path(second.path)))[1] == written
        assert len(written.splitlines()) == events

        removed = await offboarder.purge(step)
        assert removed > events
        assert await offboarder.purge(step) == 0
    assert await every_row_of(stack.main, account_id) == {}
