"""The bench's own stack: a fresh database, a Temporal dev server, and the worker and API as separate
processes (as in production), plus the bench's own view of them (a pool and Redis) from the
composition root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp
import psutil

from core.settings import Settings
from erp.bootstrap import Container
from erp.devserver import create_database, drop_database, free_ports, start_temporal, with_database
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
        temporal_port, self.port = free_ports(2)
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

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "ERP_TASK_QUEUE": "erp-bench",
            "ERP_OPERATOR_TOKEN": OPERATOR,
            "ERP_HTTP_PORT": str(self.port),
            "ERP_LOG_LEVEL": "WARNING",
        }
        erp = str(Path(sys.executable).parent / "erp")
        with (self.logs / f"{args[0]}.log").open("ab") as log:
            process = subprocess.Popen([erp, *args], env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(process)
        return process

    async def start(self) -> None:
        await create_database(self.database_url)
        await upgrade_async(self.settings)
        await self.container.start()
        self.processes.append(start_temporal(self.temporal_address))
        self.worker = self._spawn("worker")
        self.api = self._spawn("api", "--workers", str(self.api_workers))
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.base}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not become healthy within 30 s")

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
