"""A fresh machine: `erp dev` with no Postgres or Redis on their default ports starts embedded ones,
serves the API on them and stops them when it stops; a configured service that does not answer
ends a command with one line, not a traceback.

No Postgres or Redis answering is made real with a network namespace of its own (`unshare --net`,
which needs root): inside it only the loopback exists, so 127.0.0.1:5432 and :6379 are closed
whatever this machine runs. `erp dev` runs in it; the test talks to it through `nsenter`, running
the very curl lines `erp dev` prints.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from erp.devserver import free_port
from tests.conftest import BASE_DATABASE_URL

ERP = str(Path(sys.executable).parent / "erp")
CONFIGURED = {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS"}
"""Left out of `erp dev`'s environment: it finds its services itself."""
HTTP_PORT = 18000
"""The API's port inside the namespace (its own loopback: nothing else listens there)."""

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip", "curl")),
    reason="needs root, unshare, nsenter, ip and curl (a network namespace of its own)",
)


def _ours(directory: Path) -> list[str]:
    """Running processes that work in `directory` or below, or name it: what `erp dev` started there
    (redis-server rewrites its command line, but works in `.erp/redis`; Postgres in `.erp/postgres`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in command:
            found.append(f"{entry.name} (in {cwd}): {command}")
    return found


class DevInNamespace:
    """`erp dev` in a network namespace of its own, with a fresh working directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.output = workdir / "dev.out"
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in {"DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS"}
            },
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # a free port here is free in the namespace too
            "ERP_HTTP_PORT": str(HTTP_PORT),
            "ERP_LOG_LEVEL": "WARNING",
            "COLUMNS": "400",  # the console's lines unwrapped
        }
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {ERP} dev --no-temporal-ui"],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A shell command inside the namespace."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, command: str) -> subprocess.Popen[str]:
        """A shell command inside the namespace, left running: in a process group of its own, so
        that `os.killpg` ends the command too, not only its shell."""
        return subprocess.Popen(
            ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "sh", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_until_ready(self, timeout: float = 120) -> None:
        """Until the API answers and `erp dev` has printed its demo lines."""
        deadline = time.monotonic() + timeout
        while "watch notifications" not in self.said():
            assert self.process.poll() is None, (
                f"erp dev exited with {self.process.returncode}:\n{self.said()}"
            )
            assert time.monotonic() < deadline, f"erp dev was not ready within {timeout} s:\n{self.said()}"
            time.sleep(0.3)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevInNamespace]:
    running = DevInNamespace(tmp_path)
    try:
        yield running
    finally:
        running.stop()


@needs_namespaces
def test_erp_dev_serves_on_embedded_services_and_leaves_nothing_running(
    dev: DevInNamespace, tmp_path: Path
) -> None:
    started = time.monotonic()
    dev.wait_until_ready()
    ready_after = time.monotonic() - started
    said = dev.said()
    assert "started an embedded PostgreSQL 18 on 127.0.0.1:" in said
    assert "started an embedded Redis 6.2 on 127.0.0.1:" in said
    assert (tmp_path / ".erp" / "postgres" / "PG_VERSION").read_text().strip() == "18"

    health = dev.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{HTTP_PORT}/health")
    assert health.stdout == "200", (health.stdout, health.stderr)

    lines = said.splitlines()
    curl = {
        title: lines[lines.index(f"# {title}") + 1]
        for title in (
            "place an order (the seed's PlaceOrderCommand):",
            "read it back, waiting until the read model has it:",
            "watch notifications:",
        )
    }
    place, read, watch = curl.values()
    notifications = dev.popen(watch.replace("curl -sN", "curl -sN --max-time 30", 1))
    try:
        time.sleep(1)  # subscribed before the order is placed
        placed = dev.run(place)
        assert '"Positions":{"Order":1}' in placed.stdout.replace(" ", ""), placed.stdout
        orders = dev.run(read)
        assert "Linus Torvalds" in orders.stdout and "KB-1" in orders.stdout, orders.stdout
        assert notifications.stdout is not None
        first = notifications.stdout.readline()
        while first and not first.startswith("data:"):
            first = notifications.stdout.readline()
        assert re.search(r'"Projection"', first), first
    finally:
        os.killpg(notifications.pid, signal.SIGKILL)
        notifications.wait()

    started_here = " ".join(_ours(tmp_path))
    for server in ("postgres", "redis-server", "temporal"):  # so the check below would see them
        assert server in started_here, started_here
    assert dev.stop() == 0, dev.said()
    left = _ours(tmp_path)
    assert left == [], f"still running after erp dev stopped (ready after {ready_after:.1f} s): {left}"


@pytest.mark.parametrize("command", [["migrate"], ["dev", "--no-temporal-ui"], ["api"], ["worker"]])
def test_a_configured_service_that_does_not_answer_is_one_line(command: list[str], tmp_path: Path) -> None:
    """DATABASE_URL set to where nothing answers: one line naming it (its password hidden), exit 1,
    and `erp dev` starts nothing embedded in its place."""
    url = f"postgresql://erp:s3cret@127.0.0.1:{free_port()}/erp"
    env = {**os.environ, "DATABASE_URL": url, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([ERP, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"erp {command[0]}: PostgreSQL is not reachable at {url.replace('s3cret', '***')}: "
        f"nothing answers on {url.split('@')[1].split('/')[0]}"
    ]
    assert "s3cret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / ".erp").exists()


def test_a_redis_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    env = {**os.environ, "REDIS_URL": url, "DATABASE_URL": BASE_DATABASE_URL}  # Postgres answers
    done = subprocess.run([ERP, "worker"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Redis is not reachable at redis://:***@127.0.0.1:" in done.stderr
    assert "pw@" not in done.stderr and "Traceback" not in done.stderr
