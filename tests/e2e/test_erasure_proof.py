"""The erasure proof: a person's personal data is erased through the API, then the whole database is
dumped (`pg_dump`) and the run's logs are read, and no plaintext of it is found anywhere: not in
events, read models, the command log, parked events or logs. Another person of the same account and
a person of another account keep theirs, which the same dump shows (so the search could find it).

The API and the worker run as the processes an operator deploys (`erp api`, `erp worker`), logging
at DEBUG to files the test reads; the queries and the export see the erasure too, and bad erasures
get 4xx problem+json and change nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from erp.devserver import drop_database, free_port
from erp.embedded import postgres_bin
from tests.conftest import OPERATOR_TOKEN, Tenant, fresh_database
from tests.e2e.test_bulk_onboarding import run_cli

pytestmark = pytest.mark.timeout(240)


@dataclass
class Deployed:
    settings: Settings
    base: str
    logs: list[Path]


def _spawn(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "ERP_TASK_QUEUE": settings.task_queue,
        "ERP_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "ERP_HTTP_PORT": str(settings.http_port),
        "ERP_LOG_LEVEL": "DEBUG",
    }
    erp = os.path.join(os.path.dirname(sys.executable), "erp")
    with log.open("ab") as out:
        return subprocess.Popen([erp, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
async def deployed(module_temporal: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployed]:
    url = await fresh_database()
    settings = Settings(
        database_url=url,
        temporal_address=module_temporal,
        task_queue=f"erp-erasure-{uuid.uuid4().hex[:8]}",
        operator_token=OPERATOR_TOKEN,
        http_port=free_port(),
    )
    logs = tmp_path_factory.mktemp("erasure-logs")
    processes = [_spawn(settings, logs / "worker.log", "worker"), _spawn(settings, logs / "api.log", "api")]
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            for _ in range(300):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the API did not become healthy")
        yield Deployed(settings, base, [logs / "worker.log", logs / "api.log"])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await drop_database(url)


@pytest.fixture
async def client(deployed: Deployed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployed.base, timeout=30) as http:
        yield http


async def onboard(http: httpx.AsyncClient) -> Tenant:
    response = await http.post(
        "/accounts", json={"Name": "Erasure"}, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(uuid.UUID(body["AccountId"]), body["ApiKey"])


async def command(http: httpx.AsyncClient, tenant: Tenant, name: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {**tenant.headers, "Idempotency-Key": str(uuid.uuid4())}  # each one logged
    response = await http.post(f"/commands/{name}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


class Person:
    """A person's personal data, as no other test writes it."""

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        tag = uuid.uuid4().hex[:12]
        self.name = f"Ottoline {tag}"
        self.new_name = f"Ottoline Morrell {tag}"
        self.email = f"ottoline.{tag}@example.test"
        self.street = f"{tag} Garsington Road"
        self.city = f"Oxford {tag}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.name, self.new_name, self.email, self.street, self.city)

    async def register(self, http: httpx.AsyncClient, tenant: Tenant, workarea: str) -> str:
        """Registered, renamed, given an address and made a customer, who orders; its customer id."""
        await command(
            http, tenant, "RegisterPerson", {"PersonId": self.id, "Name": self.name, "Email": self.email}
        )
        await command(http, tenant, "RenamePerson", {"PersonId": self.id, "Name": self.new_name})
        address = {"Kind": "Home", "Street": self.street, "City": self.city, "Country": "GB"}
        await command(http, tenant, "ChangeAddress", {"PartyId": self.id, "Address": address})
        customer = str(uuid.uuid4())
        body = {"CustomerId": customer, "PartyId": self.id, "WorkareaId": workarea, "SpendingLimit": "100.00"}
        await command(http, tenant, "MakeCustomer", body)
        order = {
            "OrderId": str(uuid.uuid4()),
            "CustomerId": customer,
            "CustomerName": "Account holder",
            "OrderLines": [{"ProductCode": "P", "Quantity": 1, "UnitPrice": "5.00"}],
        }
        await command(http, tenant, "PlaceOrder", order)
        return customer


async def customer(http: httpx.AsyncClient, tenant: Tenant, customer_id: str, token: str) -> dict[str, Any]:
    params = {"CustomerId": customer_id, "ConsistentWith": token, "Timeout": "20"}
    response = await http.get("/queries/GetCustomer", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    [item] = response.json()["Items"]
    return dict(item)


def dump(settings: Settings) -> str:
    """The whole database as pg_dump writes it (data and schema): the embedded wheel's pg_dump 18, which
    dumps a PostgreSQL 15 and 18 alike (a machine's pg_dump 15 refuses a newer server)."""
    done = subprocess.run(
        [str(postgres_bin() / "pg_dump"), "--no-owner", f"--dbname={settings.database_url}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def tables(dumped: str) -> dict[str, str]:
    """Each table's rows in a dump (its `COPY public.<table> ... FROM stdin;` block)."""
    blocks: dict[str, str] = {}
    for block in dumped.split("\nCOPY public.")[1:]:
        table, rest = block.split(" ", 1)
        blocks[table] = rest.split("\n\\.\n", 1)[0]
    return blocks


def found(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s in text]


async def test_an_erased_persons_data_is_nowhere_in_a_dump_of_the_database_or_the_logs(
    deployed: Deployed, client: httpx.AsyncClient
) -> None:
    http = client
    tenant, other = await onboard(http), await onboard(http)
    workareas = {}
    for t in (tenant, other):
        workareas[t.account_id] = str(uuid.uuid4())
        await command(http, t, "CreateWorkarea", {"WorkareaId": workareas[t.account_id], "Name": "North"})
    erased, kept, elsewhere = Person(), Person(), Person()
    erased_customer = await erased.register(http, tenant, workareas[tenant.account_id])
    kept_customer = await kept.register(http, tenant, workareas[tenant.account_id])
    await elsewhere.register(http, other, workareas[other.account_id])

    before = await command(http, tenant, "RenamePerson", {"PersonId": kept.id, "Name": kept.new_name})
    shown = await customer(http, tenant, erased_customer, before["ConsistencyToken"])
    assert (shown["Name"], shown["Email"]) == (erased.new_name, erased.email)
    plain = await asyncio.to_thread(dump, deployed.settings)
    assert found(plain, erased.secrets), "the dump shows read models: the search can find the data"
    events = "".join(rows for table, rows in tables(plain).items() if table.startswith("events"))
    assert str(erased.id) in events, "the dump's events were not found"
    assert not found(events, erased.secrets), "events hold personal data in the clear"

    erasure = await command(http, tenant, "ErasePerson", {"PersonId": erased.id})
    again = await http.post("/commands/ErasePerson", json={"PersonId": erased.id}, headers=tenant.headers)
    assert again.status_code == 200 and again.json() == erasure, "erasing twice answers as the first time"

    # Queries: the customer shows no name, email or address any more; the others are untouched.
    gone = await customer(http, tenant, erased_customer, erasure["ConsistencyToken"])
    assert (gone.get("Name"), gone.get("Email"), gone.get("Addresses")) == (None, None, [])
    still = await customer(http, tenant, kept_customer, erasure["ConsistencyToken"])
    assert (still["Name"], still["Email"]) == (kept.new_name, kept.email)
    refused = await http.post(
        "/commands/RenamePerson", json={"PersonId": erased.id, "Name": "Back again"}, headers=tenant.headers
    )
    assert refused.status_code == 422 and "erased" in refused.json()["detail"]

    # The export shows the erased attributes as null.
    exported = await asyncio.to_thread(
        run_cli, deployed.settings, "accounts", "export", str(tenant.account_id)
    )
    assert exported.returncode == 0, exported.stderr
    assert not found(exported.stdout, erased.secrets)
    assert kept.street in exported.stdout
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    registered = next(
        x for x in lines if x["Name"] == "PersonRegistered" and x["StreamId"] == f"Person-{erased.id}"
    )
    assert (registered["Payload"]["Name"], registered["Payload"]["Email"]) == (None, None)

    # The whole database and every log line of the run.
    text = await asyncio.to_thread(dump, deployed.settings)
    assert "subject_keys" in text and "parked_events" in text and "command_log" in text
    assert not found(text, erased.secrets), "the erased person's data is still in the database"
    assert found(text, kept.secrets) and found(text, elsewhere.secrets), "erased more than the subject"
    await asyncio.sleep(0.5)  # the processes' last lines written
    logs = "\n".join(path.read_text(errors="replace") for path in deployed.logs)
    assert logs.strip(), "the run wrote no logs: nothing was searched"
    assert not found(logs, erased.secrets), "the erased person's data is in the logs"


async def test_bad_erasures_get_a_problem_and_change_nothing(client: httpx.AsyncClient) -> None:
    http = client
    tenant, other = await onboard(http), await onboard(http)
    theirs = str(uuid.uuid4())
    await command(
        http, other, "RegisterPerson", {"PersonId": theirs, "Name": "Theirs", "Email": "t@example.test"}
    )
    for body, status in (
        ({"PersonId": str(uuid.uuid4())}, 404),  # no such person
        ({"PersonId": theirs}, 404),  # another account's
        ({"PersonId": "not-an-id"}, 422),
        ({}, 422),
    ):
        response = await http.post("/commands/ErasePerson", json=body, headers=tenant.headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    # Theirs is still theirs: renaming it works, so it was not erased.
    await command(http, other, "RenamePerson", {"PersonId": theirs, "Name": "Still theirs"})
