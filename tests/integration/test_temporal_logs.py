"""The Temporal SDK core's own log lines come out as JSON lines, like every other line we log.

The core (Rust) writes to the process's stderr itself unless its logs are forwarded to Python; the fault
suite once caught its retry warnings as plain text. Here a process connects to a dev server, the server
dies, a call retries, and every line on that process's stderr must be a JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal
    from erp.devserver import free_port, start_temporal
    from core.settings import Settings
    from core.telemetry import configure_logging
    from core.temporal import connect_temporal

    async def main() -> None:
        configure_logging()
        address = f"127.0.0.1:{free_port()}"
        server = start_temporal(address)
        try:
            client = await connect_temporal(Settings(temporal_address=address))
            await client.count_workflows()
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        try:
            await asyncio.wait_for(client.count_workflows(), 3)
        except Exception:
            pass
        await asyncio.sleep(0.2)  # the core hands its logs over in small batches

    asyncio.run(main())
    """
)


def test_the_sdk_cores_retry_warnings_are_json_lines() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    core = [e for e in entries if e["logger"] == "temporalio.core"]
    assert core, f"no retry warning was logged: {done.stderr!r}"
    assert any(e["level"] == "WARNING" and "retried" in e["message"] for e in core), core
