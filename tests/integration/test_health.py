"""The health routes and the Temporal UI that `erp dev` opens, against the real services.

The deep check (`/health`) asks Postgres, Redis and Temporal; its answer is kept for a moment and
shared by concurrent callers, so polling it cannot make the API ask them on every request. The
liveness route (`/health/live`) asks nothing. `erp dev`'s Temporal dev server serves its web UI."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import httpx
import pytest

from core.settings import Settings
from erp.bootstrap import Container
from erp.devserver import free_ports, start_temporal
from erp.health import CACHE_SECONDS

pytestmark = pytest.mark.timeout(120)


async def test_the_deep_check_is_kept_for_a_moment_and_shared_by_concurrent_callers(
    settings: Settings,
) -> None:
    async with Container(settings, min_pool=1, max_pool=2).running() as container:
        checks = container.health
        answers = await asyncio.gather(*(checks.run() for _ in range(20)))
        assert checks.rounds == 1
        assert answers[0] == {"Postgres": "up", "Redis": "up", "Temporal": "up"}
        assert all(answer == answers[0] for answer in answers)
        await checks.run()
        assert checks.rounds == 1  # kept
        await asyncio.sleep(CACHE_SECONDS + 0.1)
        await checks.run()
        assert checks.rounds == 2  # asked again once it is older than that


async def test_liveness_asks_no_dependency(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await http.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"Status": "ok", "Checks": {}}
    assert time.monotonic() - started < 5
    assert (await http.get("/health")).json()["Status"] == "ok"


def test_the_dev_temporal_server_serves_its_web_ui() -> None:
    """`erp dev` starts Temporal with its UI (on :8233 there; on a free port here)."""
    port, ui = free_ports(2)
    server = start_temporal(f"127.0.0.1:{port}", ui_port=ui)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/", timeout=2) as response:
                    assert response.status == 200
                    assert b"<html" in response.read(500).lower()
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(15)
