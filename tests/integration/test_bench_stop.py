"""A bench stopped with SIGTERM, SIGINT or SIGHUP still cleans up (its database, its servers).

`stoppable` turns each signal into a cancellation, so `finally` blocks run; without it SIGTERM and
SIGHUP kill the process on the spot and a background job ignores SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from core.stopping import stoppable

    async def work() -> None:
        try:
            print("started", flush=True)
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.1)  # clean-up may await too
            open(sys.argv[1], "w").write("cleaned up")

    try:
        asyncio.run(stoppable(work()))
    except asyncio.CancelledError:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_cancels_the_work_and_its_clean_up_runs(tmp_path: Path, stop: signal.Signals) -> None:
    marker = tmp_path / "marker"
    # SIGINT ignored, as a shell does for a background job: the handler must not depend on it.
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(marker)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        child.send_signal(stop)
        assert child.wait(timeout=30) == 130
    assert marker.read_text() == "cleaned up"
