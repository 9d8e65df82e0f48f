"""Bulk onboarding: POST /accounts/import and `erp accounts import FILE` open every account a file
names, each with its key (shown once), as one workflow; a file with a bad line opens nobody."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest

from core.settings import Settings
from erp.bootstrap import Container
from tenancy.catalog import NewAccount
from tenancy.imports import Entry
from tests.e2e.test_onboarding import eventually, serving


async def opened(pool: asyncpg.Pool[Any]) -> tuple[int, int]:
    """Accounts and imports in the catalog."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM accounts) a, (SELECT count(*) FROM account_imports) i"
    )
    assert row is not None
    return row["a"], row["i"]


async def statuses(pool: asyncpg.Pool[Any], account_ids: list[UUID]) -> set[str]:
    rows = await pool.fetch("SELECT status FROM accounts WHERE account_id = ANY($1)", account_ids)
    assert len(rows) == len(account_ids)
    return {r["status"] for r in rows}


async def answers(http: httpx.AsyncClient, api_key: str) -> int:
    headers = {"Authorization": f"Bearer {api_key}"}
    response = await http.get("/queries/GetOrders", params={"CustomerName": "x"}, headers=headers)
    return response.status_code


async def test_an_import_over_http_opens_every_account_with_its_key(
    http: httpx.AsyncClient, operator: dict[str, str], pool: asyncpg.Pool[Any]
) -> None:
    tag = uuid.uuid4().hex[:6]
    names = [f"Bulk {tag} {i}" for i in range(300)]
    body = "\n".join(json.dumps({"Name": n}) for n in names[:150]) + "\n"
    response = await http.post("/accounts/import", content=body.encode(), headers=operator)
    assert response.status_code == 201, response.text
    first = response.json()
    assert first["Status"] == "Active"
    assert [a["Line"] for a in first["Accounts"]] == list(range(1, 151))

    plain = "\n\n".join(names[150:]).encode()  # one name a line, with blank lines between
    response = await http.post("/accounts/import", content=plain, headers=operator)
    assert response.status_code == 201, response.text
    second = response.json()
    assert [a["Line"] for a in second["Accounts"]] == list(range(1, 300, 2))

    accounts = first["Accounts"] + second["Accounts"]
    assert [a["Name"] for a in accounts] == names
    assert len({a["ApiKey"] for a in accounts}) == 300
    ids = [UUID(a["AccountId"]) for a in accounts]
    assert await statuses(pool, ids) == {"Active"}
    for account in accounts[::50]:
        assert await answers(http, account["ApiKey"]) == 200
    state = await http.get(f"/accounts/imports/{first['ImportId']}", headers=operator)
    assert state.json() == {"ImportId": first["ImportId"], "Accounts": 150, "Active": 150, "Status": "Active"}
    shown = await http.get(f"/accounts/{ids[0]}", headers=operator)
    assert shown.json()["Name"] == names[0]


async def test_a_bad_import_names_its_bad_lines_and_opens_nobody(
    http: httpx.AsyncClient, operator: dict[str, str], pool: asyncpg.Pool[Any]
) -> None:
    before = await opened(pool)
    body = b"Fine\n\nFine\n" + b"x" * 201 + b"\nbad \xff utf-8\nAlso fine\n"
    response = await http.post("/accounts/import", content=body, headers=operator)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert [e["Line"] for e in problem["Errors"]] == [3, 4, 5]
    assert [e["detail"].split(":")[0] for e in problem["errors"]] == ["line 3", "line 4", "line 5"]
    assert "line 3: 'Fine' is already on line 1" in problem["detail"]
    assert await opened(pool) == before

    empty = await http.post("/accounts/import", content=b"", headers=operator)
    assert empty.status_code == 422 and "names no accounts" in empty.json()["detail"]
    assert await opened(pool) == before


async def test_an_import_is_for_operators_only(http: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    before = await opened(pool)
    for headers in ({}, {"Authorization": "Bearer not-the-operator"}):
        response = await http.post("/accounts/import", content=b"Sneaky\n", headers=headers)
        assert response.status_code == 401
    assert await opened(pool) == before
    missing = await http.get(f"/accounts/imports/{uuid.uuid4()}", headers={"Authorization": "Bearer x"})
    assert missing.status_code == 401


async def test_an_unknown_import_is_404(http: httpx.AsyncClient, operator: dict[str, str]) -> None:
    response = await http.get(f"/accounts/imports/{uuid.uuid4()}", headers=operator)
    assert response.status_code == 404 and "there is no import" in response.json()["detail"]


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "ERP_TASK_QUEUE": settings.task_queue,
        "COLUMNS": "200",
    }
    erp = os.path.join(os.path.dirname(sys.executable), "erp")
    return subprocess.run([erp, *args], env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_writes_each_key_once_to_a_new_private_file(
    settings: Settings, worker: None, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    source = tmp_path / "accounts.txt"
    source.write_text("".join(f"Cli {tag} {i}\n" for i in range(500)))
    out = tmp_path / "keys.jsonl"
    done = await asyncio.to_thread(run_cli, settings, "accounts", "import", str(source), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "500 accounts onboarded" in done.stderr
    assert done.stdout == ""  # the keys went to the file only
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["Line"] for w in written] == list(range(1, 501))
    assert {w["Name"] for w in written} == {f"Cli {tag} {i}" for i in range(500)}
    assert await statuses(pool, [UUID(w["AccountId"]) for w in written]) == {"Active"}

    again = await asyncio.to_thread(run_cli, settings, "accounts", "import", str(source), "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr  # keys are never overwritten


async def test_the_cli_prints_to_stdout_and_reports_bad_lines_by_number(
    settings: Settings, worker: None, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"Name": f"Json {tag} {i}"}) + "\n" for i in range(3)))
    done = await asyncio.to_thread(run_cli, settings, "accounts", "import", str(good))
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["Name"] for p in printed] == [f"Json {tag} {i}" for i in range(3)]

    before = await opened(pool)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Name": "One"}\n{"Name": 2}\n{"Name": "One"}\n')
    refused = await asyncio.to_thread(run_cli, settings, "accounts", "import", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:2:" in refused.stderr and f"{bad}:3: 'One' is already on line 1" in refused.stderr
    assert "no account was opened" in refused.stderr
    assert await opened(pool) == before


async def test_keys_that_cannot_be_kept_open_nobody(settings: Settings, pool: asyncpg.Pool[Any]) -> None:
    before = await opened(pool)

    def disk_full(_: object) -> None:
        raise OSError(28, "No space left on device")

    async with Container(settings, min_pool=1, max_pool=2).running() as container:
        with pytest.raises(OSError):
            await container.onboarding.import_accounts([Entry(1, "Unkept")], keep=disk_full)
    assert await opened(pool) == before


async def test_a_worker_finishes_an_import_whose_workflow_never_started(
    settings: Settings, pool: asyncpg.Pool[Any]
) -> None:
    async with Container(settings, min_pool=1, max_pool=2).running() as container:
        import_id = uuid.uuid4()
        registered = await container.catalog.register_many(
            [NewAccount(f"Stranded {i}", "main") for i in range(3)], import_id
        )
        ids = [account.account_id for account, _ in registered]
        assert await statuses(pool, ids) == {"Onboarding"}
        stop, worker = await serving(replace(settings, task_queue=f"erp-sweep-{uuid.uuid4().hex[:8]}"))
        try:

            async def finished() -> bool:
                state = await container.catalog.import_state(import_id)
                return state is not None and state.finished

            await eventually(finished, 30, "the worker's sweep to finish the import")
            assert await statuses(pool, ids) == {"Active"}
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30)
