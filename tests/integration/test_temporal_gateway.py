"""The API's Temporal client: when it cannot connect (nothing there, or something that does not speak
Temporal's gRPC, as when a port was taken by another server), the request gets a 503, not a 500."""

from __future__ import annotations

import asyncio

import pytest

from core.problems import UNAVAILABLE, _unavailable
from core.settings import Settings
from core.temporal import TemporalUnavailable
from erp.bootstrap import TemporalGateway
from erp.devserver import free_port


async def not_temporal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("listening", [False, True], ids=["nothing there", "another server"])
async def test_a_failed_connection_is_temporal_unavailable(listening: bool) -> None:
    port = free_port()
    server = await asyncio.start_server(not_temporal, "127.0.0.1", port) if listening else None
    try:
        with pytest.raises(TemporalUnavailable):
            await TemporalGateway(Settings(temporal_address=f"127.0.0.1:{port}")).client()
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


def test_temporal_unavailable_is_answered_503_naming_temporal() -> None:
    assert issubclass(TemporalUnavailable, UNAVAILABLE)
    answer = _unavailable(TemporalUnavailable("Failed client connect"))
    assert (answer.status_code, answer.headers) == (503, {"Retry-After": "1"})
    assert answer.detail is not None and "Temporal" in answer.detail
