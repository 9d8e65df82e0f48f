"""A real Redis Cluster for the cluster-mode tests, from the machine's `redis-server`.

Three primaries (no replicas) on free loopback ports, each in a temporary directory of its own;
`redis_cluster()` creates the cluster with `redis-cli --cluster create`, waits until every node
says `cluster_state:ok`, and afterwards stops the servers and removes the directories. The
machine's own Redis (6379) is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
import redis.asyncio

from erp.devserver import free_ports

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


@dataclass(frozen=True)
class ClusterNodes:
    """The running cluster: its primaries' ports, in the order they were started."""

    ports: list[int]

    @property
    def url(self) -> str:
        """REDIS_URL naming one startup node, as a deployment would."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.asyncio.Redis:
        """A plain client of one node, to ask it about itself."""
        return redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    async def owners(self, channels: Iterable[str]) -> list[int]:
        """The port of the node owning each channel's slot, from the cluster's own slot map."""
        async with self.node(self.ports[0]) as node:
            ranges = [
                (int(r[0]), int(r[1]), int(r[2][1])) for r in await node.execute_command("CLUSTER SLOTS")
            ]
            found = []
            for channel in channels:
                slot = int(await node.execute_command("CLUSTER KEYSLOT", channel))
                found.append(next(port for low, high, port in ranges if low <= slot <= high))
            return found

    async def subscribers(self, kind: str, channel: str) -> dict[int, int]:
        """`PUBSUB <kind> channel` (SHARDNUMSUB: sharded subscribers; NUMSUB: plain) of every node."""
        counts = {}
        for port in self.ports:
            async with self.node(port) as node:
                counts[port] = int((await node.execute_command("PUBSUB", kind, channel))[1])
        return counts

    async def until_subscribers(
        self, kind: str, channel: str, expected: dict[int, int], within: float = 10
    ) -> None:
        """Until `subscribers(kind, channel)` is `expected` (by port)."""
        deadline = time.monotonic() + within
        while (counts := await self.subscribers(kind, channel)) != expected:
            assert time.monotonic() < deadline, f"PUBSUB {kind} {channel}: {counts}, not {expected}"
            await asyncio.sleep(0.02)


def _answering(port: int, within: float = 30) -> None:
    deadline = time.monotonic() + within
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1) as client:
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {port} did not answer within {within} s")
            time.sleep(0.05)


def _cluster_ok(ports: list[int], within: float = 30) -> None:
    deadline = time.monotonic() + within
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
            while client.cluster("INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster was not ok within {within} s (node {port})")
                time.sleep(0.05)


@contextlib.contextmanager
def redis_cluster(primaries: int = 3) -> Iterator[ClusterNodes]:
    """A running cluster of `primaries` nodes, stopped and removed afterwards however the block ends."""
    ports = free_ports(2 * primaries)
    # Each node's cluster bus gets a free port too: the default, port + 10000, may be taken.
    data_ports, bus_ports = ports[:primaries], ports[primaries:]
    root = Path(tempfile.mkdtemp(prefix="erp-redis-cluster-"))
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port, bus_port in zip(data_ports, bus_ports, strict=True):
            directory = root / str(port)
            directory.mkdir()
            with (directory / "redis.log").open("wb") as log:
                servers.append(
                    subprocess.Popen(
                        [
                            *(REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"),
                            *("--cluster-enabled", "yes", "--cluster-port", str(bus_port)),
                            *("--cluster-config-file", str(directory / "nodes.conf")),
                            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for port in data_ports:
            _answering(port)
        subprocess.run(
            [
                *(REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{port}" for port in data_ports)),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _cluster_ok(data_ports)
        yield ClusterNodes(data_ports)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)
