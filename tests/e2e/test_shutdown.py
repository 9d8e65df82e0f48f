"""Stopping the API with event streams open: the streams end cleanly at once and the server exits
within a few seconds, not after its shutdown timeout (one open /notifications used to hold `erp dev`
up 25 s and more after SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

from core.settings import Settings
from erp.cli.serve import api_server
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard, with_port

SRC = Path(__file__).resolve().parents[2] / "src"


async def _stream_then_stop(url: str, tenant: Tenant, stop: object) -> tuple[list[str], float]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", "/notifications", headers=tenant.headers) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        async with asyncio.timeout(10):
            while await anext(lines) != ": ping":
                pass
        started = time.monotonic()
        assert callable(stop)
        stop()
        rest = [line async for line in lines]  # a stream cut short raises httpx.RemoteProtocolError
        return rest, time.monotonic() - started


async def test_a_server_told_to_stop_ends_its_streams_and_exits_at_once(
    settings: Settings, http: httpx.AsyncClient
) -> None:
    tenant = await onboard(http, "Stopped")
    own = replace(with_port(settings), sse_ping=0.2, shutdown_timeout=30)
    server = api_server(own, capture_signals=False)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.05)

    def stop() -> None:
        server.should_exit = True

    rest, ended = await _stream_then_stop(f"http://127.0.0.1:{own.http_port}", tenant, stop)
    started = time.monotonic() - ended
    await asyncio.wait_for(task, 10)
    assert ended < 2, f"the stream ended {ended:.1f} s after the server was told to stop"
    assert time.monotonic() - started < 5, "the server took its shutdown timeout"
    assert all(line in ("", ": ping") for line in rest), rest


def _erp_api(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from erp.cli import app; app()", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_sigterm_stops_erp_api_with_a_stream_open(settings: Settings, http: httpx.AsyncClient) -> None:
    tenant = await onboard(http, "Terminated")
    own = with_port(settings)
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "DATABASE_URL": own.database_url,
        "REDIS_URL": own.redis_url,
        "TEMPORAL_ADDRESS": own.temporal_address,
        "ERP_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "ERP_HTTP_PORT": str(own.http_port),
        "ERP_SSE_PING": "0.2",
        "ERP_SHUTDOWN_TIMEOUT": "30",
    }
    process = _erp_api(env)
    url = f"http://127.0.0.1:{own.http_port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client, asyncio.timeout(60):
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)

        rest, ended = await _stream_then_stop(url, tenant, lambda: process.send_signal(signal.SIGTERM))
        started = time.monotonic() - ended
        code = await asyncio.to_thread(process.wait, 15)
        assert time.monotonic() - started < 5, "erp api took its shutdown timeout"
        assert ended < 2, f"the stream ended {ended:.1f} s after SIGTERM"
        assert all(line in ("", ": ping") for line in rest), rest
        assert code in (0, -signal.SIGTERM), code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
