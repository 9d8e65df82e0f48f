"""The bench's own stack: a fresh database, a Temporal dev server, and the worker and API as separate
processes (as in production), the bare app of the API's shape beside them (`erp.bench.bare`, the
ceiling), plus the bench's own view of them (a pool and Redis) from the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import psutil

from core.settings import Settings
from erp.bootstrap import Container
from erp.devserver import (
    create_database,
    drop_database,
    free_port,
    free_ports,
    start_temporal,
    with_database,
)
from erp.migrate import upgrade_async

OPERATOR = "bench-operator-token"


class Stack:
    """Database, Temporal, worker and API processes of the bench's own."""

    def __init__(self, api_workers: int) -> None:
        self.api_workers = api_workers
        self.database_url = with_database(
            os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            f"erp_bench_{uuid.uuid4().hex[:10]}",
        )
        temporal_port, self.port, self.bare_port = free_ports(3)
        self.temporal_address = f"127.0.0.1:{temporal_port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="erp-bench-logs-"))
        """The worker's and the API's log lines (JSON), kept after the bench, out of its table."""
        self.settings = Settings(
            database_url=self.database_url,
            temporal_address=self.temporal_address,
            task_queue="erp-bench",
            operator_token=OPERATOR,
            http_port=self.port,
        )
        self.container = Container(self.settings, min_pool=1, max_pool=2)
        """The bench's own pool (to watch the projector's lag) and Redis (to hear notifications)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bare_base(self) -> str:
        """The bare app's (`erp.bench.bare`): the API's shape, no I/O."""
        return f"http://127.0.0.1:{self.bare_port}"

    def _spawn(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        log: str | None = None,
        program: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`erp <args>` (or `<program> <args>`) on this stack, with `env` over its environment,
        logging to `<log>.log` (by default the command's name)."""
        environment = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "ERP_TASK_QUEUE": "erp-bench",
            "ERP_OPERATOR_TOKEN": OPERATOR,
            "ERP_HTTP_PORT": str(self.port),
            "ERP_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        command = program or [str(Path(sys.executable).parent / "erp")]
        with (self.logs / f"{log or args[0]}.log").open("ab") as lines:
            process = subprocess.Popen(
                [*command, *args], env=environment, stdout=subprocess.DEVNULL, stderr=lines
            )
        self.processes.append(process)
        return process

    async def start(self) -> None:
        await create_database(self.database_url)
        await upgrade_async(self.settings)
        await self.container.start()
        self.processes.append(start_temporal(self.temporal_address))
        self.worker = self._spawn("worker")
        self.api = self._spawn("api", "--workers", str(self.api_workers))
        # As many processes as the API's, served by uvicorn with the API's options (erp.bench.bare).
        self.bare = self._spawn(
            "--port",
            str(self.bare_port),
            "--workers",
            str(self.api_workers),
            log="bare",
            program=[sys.executable, "-m", "erp.bench.bare"],
        )
        await self._healthy(self.base, self.api, "api")
        await self._healthy(self.bare_base, self.bare, "bare")

    async def _healthy(self, base: str, process: subprocess.Popen[bytes], log: str) -> None:
        """Until the API at `base` answers /health with 200; RuntimeError if it exits first or has
        not within 30 s."""
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the API exited ({process.returncode}) before it was healthy: "
                        f"see {self.logs / f'{log}.log'}"
                    )
                try:
                    async with session.get(f"{base}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not become healthy within 30 s")

    @contextlib.asynccontextmanager
    async def another_api(self, log: str, env: Mapping[str, str]) -> AsyncIterator[str]:
        """A second API process on this stack (its database, worker, Temporal and Redis), with `env`
        over the stack's environment (ERP_SEAL_PERSONAL_DATA=0, say), on a free port of its own and
        logging to `<log>.log`: its base URL once healthy. Stopped on leaving, and by `stop` too
        (it is one of `processes` until then)."""
        port = free_port()
        api_env = {**env, "ERP_HTTP_PORT": str(port)}
        process = self._spawn("api", "--workers", str(self.api_workers), env=api_env, log=log)
        try:
            base = f"http://127.0.0.1:{port}"
            await self._healthy(base, process, log)
            yield base
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
            self.processes.remove(process)

    def rss_mb(self, process: subprocess.Popen[bytes]) -> float:
        """Resident memory of a process and its children (the API's worker processes)."""
        parent = psutil.Process(process.pid)
        processes = [parent, *parent.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        await self.container.close()
        await drop_database(self.database_url)
