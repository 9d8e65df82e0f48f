"""A build's bulk pass in a process of its own, so that it never holds up the worker's event loop.

The bulk pass is Python-bound: it folds tens of thousands of events a second. Run in the worker's
own event loop, every await of the live projectors' batches (and so every notification) would wait
behind a slice of it. In a child process, the operating system shares the cores instead, and the
child runs at a lower priority (`nice`), so the live work comes first.

`bulk_pass_in_process` starts `python -m queries.build_process`, hands it the build (the database's
URL through its environment, never its command line), relays each chunk it reports (one JSON line
on its stdout) and stops it if the caller is cancelled. On Linux the child dies with its parent
(a killed worker leaves no orphan writing); the checkpoints it committed say where a retry goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from uuid import UUID

from commands.erp_model import UPCASTERS
from commands.store.feed import EventFeed
from core.db import create_pool
from core.settings import Settings
from queries.blue_green import Build, Chunk, Cursor
from queries.registry import PROJECTIONS

NICENESS = 5
"""How much lower the child's priority is than the worker's."""
_DSN = "ERP_BUILD_DATABASE_URL"


class BulkPassFailed(RuntimeError):
    """The child process ended without finishing the pass (its activity is retried)."""


async def bulk_pass_in_process(
    database_url: str, projection: str, version: int, cursor: Cursor, done: Callable[[Chunk], None]
) -> None:
    """Run `Build.bulk_pass` from `cursor` in a child process; `done` hears each chunk it commits."""
    spec = json.dumps(
        {
            "projection": projection,
            "version": version,
            "account_id": str(cursor.account_id),
            "stream_type": cursor.stream_type,
            "parent": os.getpid(),
        }
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "queries.build_process",
        spec,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, _DSN: database_url},
    )
    assert child.stdout is not None and child.stderr is not None
    errors = asyncio.ensure_future(child.stderr.read())
    try:
        while line := await child.stdout.readline():
            chunk = json.loads(line)
            done(
                Chunk(
                    chunk["events"],
                    chunk["rows"],
                    chunk["seconds"],
                    Cursor(UUID(chunk["cursor"]["account_id"]), chunk["cursor"]["stream_type"]),
                    chunk["bulk"],
                )
            )
        code = await child.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()  # its open transaction is rolled back as its connections close
        await child.wait()
        raise
    finally:
        stderr = await errors
    if code != 0:
        raise BulkPassFailed(f"the bulk pass ended with {code}: {stderr.decode(errors='replace')[-2000:]}")


def _below_the_worker(parent: int) -> None:
    """In the child, first: a lower priority than the worker's (`parent`), and on Linux death with it."""
    os.nice(NICENESS)
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the call took effect
            os.kill(os.getpid(), signal.SIGKILL)


async def _run(spec: dict[str, object]) -> None:
    _below_the_worker(int(str(spec["parent"])))
    settings = Settings(database_url=os.environ[_DSN])
    pool = await create_pool(settings, min_size=2, max_size=3)
    try:
        build = Build(
            pool, PROJECTIONS[str(spec["projection"])], EventFeed(UPCASTERS), int(str(spec["version"]))
        )
        cursor = Cursor(UUID(str(spec["account_id"])), str(spec["stream_type"]))

        def report(chunk: Chunk) -> None:
            sys.stdout.write(json.dumps(asdict(chunk), default=str) + "\n")
            sys.stdout.flush()

        await build.bulk_pass(cursor, report)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(_run(json.loads(sys.argv[1])))
