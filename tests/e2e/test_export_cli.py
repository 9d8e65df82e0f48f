"""`erp accounts export`: the account's events as JSON lines on stdout or in a new private file,
and a clear refusal (exit 2, nothing written) for what it cannot export."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from commands.store.event_store import EventStore
from core.settings import Settings
from tests.conftest import make_account
from tests.e2e.test_bulk_onboarding import run_cli
from tests.integration.test_upcasting import order_placed, place


async def test_the_cli_exports_to_stdout_or_to_a_new_private_file(
    settings: Settings, worker: None, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    account_id = await make_account(pool)
    store = EventStore()
    orders = [uuid.uuid4() for _ in range(3)]
    for order_id in orders:
        await place(store, pool, account_id, order_placed(order_id, "CustomerName", "Exported"))

    printed = await asyncio.to_thread(run_cli, settings, "accounts", "export", str(account_id))
    assert printed.returncode == 0, printed.stderr
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [line["Payload"]["OrderId"] for line in lines] == [str(o) for o in orders]
    assert "3 events of account" in printed.stderr

    out = tmp_path / "export.jsonl"
    written = await asyncio.to_thread(
        run_cli, settings, "accounts", "export", str(account_id), "--out", str(out)
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == printed.stdout

    again = await asyncio.to_thread(
        run_cli, settings, "accounts", "export", str(account_id), "--out", str(out)
    )
    assert again.returncode == 2 and "exists" in again.stderr
    assert out.read_text() == printed.stdout  # never overwritten


async def test_the_cli_refuses_what_it_cannot_export(
    settings: Settings, worker: None, tmp_path: Path
) -> None:
    out = tmp_path / "nobody.jsonl"
    unknown = await asyncio.to_thread(
        run_cli, settings, "accounts", "export", str(uuid.uuid4()), "--out", str(out)
    )
    assert unknown.returncode == 2 and "there is no account" in unknown.stderr
    assert not out.exists()
    garbled = await asyncio.to_thread(run_cli, settings, "accounts", "export", "not-an-id")
    assert garbled.returncode == 2 and "AccountId" in garbled.stderr
