"""`erp bench --model-scale`: a synthetic model the size of the seed's ERP, loaded and served.

The seed's ERP has 2,830 tables with 126,705 columns. This generates a model
with as many element types and attributes (each element with a Create and an
Update command and their events), then, in a fresh database and a process of
its own, measures: building the model (types, handlers, aggregates), creating
its read-model tables, starting the API that serves every command, and
serving the first command until its row is in the read model; and the API
process's memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import psutil

SEED_ELEMENTS = 2_830
SEED_ATTRIBUTES = 126_705
TYPES = ("string", "integer", "money", "date", "boolean", "text")


def synthetic_model(elements: int = SEED_ELEMENTS, attributes: int = SEED_ATTRIBUTES) -> Any:
    """A model with `elements` element types and `attributes` attributes in all."""
    from commands.model import Attr, Change, CommandDecl, Element, EventDecl, Kind, Model, Type

    kinds = list(Kind)
    per, extra = divmod(attributes, elements)
    built = []
    for index in range(elements):
        name = f"E{index:04d}"
        count = per + (1 if index < extra else 0)
        key = Attr(f"{name}Id", Type.ID, references=name)
        fields = tuple(
            Attr(f"A{n:03d}", Type(TYPES[n % len(TYPES)]), required=False) for n in range(count - 1)
        )
        every = (key, *fields)
        names = tuple(a.name for a in every)
        built.append(
            Element(
                name=name,
                kind=kinds[index % len(kinds)],
                attributes=every,
                commands=(
                    CommandDecl(f"Create{name}", every, f"{name}Created", key=key.name, creates=True),
                    CommandDecl(f"Update{name}", every, f"{name}Updated", key=key.name),
                ),
                events=(
                    EventDecl(f"{name}Created", every, Change(set=names, status="Active", creates=True)),
                    EventDecl(f"{name}Updated", every, Change(set=names)),
                ),
            )
        )
    return Model(built)


async def measure(elements: int, attributes: int) -> dict[str, Any]:
    """Runs in its own process: build, create tables, serve the first command; returns figures."""
    import aiohttp
    from alembic import command as alembic

    from commands.model import Model
    from core.settings import MAIN_DATABASE, Settings
    from erp.app import create_app
    from erp.bootstrap import Container
    from erp.devserver import create_database, drop_database, free_port, with_database
    from erp.migrate import alembic_config
    from queries.model_projection import ModelProjection
    from queries.model_tables import ensure_model_tables, table_name
    from queries.projector import Projector

    process = psutil.Process()
    figures: dict[str, Any] = {"elements": elements, "attributes": attributes}
    base = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    settings = Settings(
        database_url=with_database(base, f"erp_scale_{uuid.uuid4().hex[:10]}"),
        http_port=free_port(),
        operator_token="scale",
    )
    started = time.monotonic()
    model: Model = synthetic_model(elements, attributes)
    figures["build_model_s"] = time.monotonic() - started
    figures["commands"] = len(model.command_types)
    await create_database(settings.database_url)
    try:
        await asyncio.to_thread(alembic.upgrade, alembic_config(settings), "head")
        tables_started = time.monotonic()
        async with Container(settings, min_pool=1, max_pool=4).running() as container:
            pool = container.databases.main
            async with pool.acquire() as connection:
                await ensure_model_tables(connection, model)
            figures["create_tables_s"] = time.monotonic() - tables_started

            app_started = time.monotonic()
            import uvicorn

            app = create_app(settings, model)
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=settings.http_port, log_level="warning")
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110  (uvicorn exposes a flag, not an event)
                await asyncio.sleep(0.05)
            figures["start_api_s"] = time.monotonic() - app_started

            first_started = time.monotonic()
            account, api_key = await container.catalog.register("Scale", MAIN_DATABASE)
            await container.onboarding.find_partition(account.account_id, account.database)
            await container.onboarding.activate(account.account_id)
            element = model.elements[f"E{elements - 1:04d}"]
            element_id = uuid.uuid4()
            body = {f"{element.name}Id": str(element_id), "A000": "first", "A001": 7, "A002": "12.50"}
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{settings.http_port}/commands/Create{element.name}",
                    json=body,
                    headers={"Authorization": f"Bearer {api_key}"},
                ) as response,
            ):
                figures["first_command_status"] = response.status
                figures["first_command_body"] = await response.json()
            projection = ModelProjection("synthetic", model, list(model.elements))
            await Projector(pool, projection, container.store.feed).catch_up(account.account_id)
            row = await pool.fetchrow(
                f"SELECT a000, a001, a002 FROM {table_name(element)} WHERE id = $1", element_id
            )
            figures["first_row"] = None if row is None else [str(v) for v in row]
            figures["first_command_s"] = time.monotonic() - first_started
            figures["total_s"] = time.monotonic() - started

            # The OpenAPI document is written when first asked for (not part of the start-up above).
            document_started = time.monotonic()
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{settings.http_port}/schema/openapi.json") as response,
            ):
                document = await response.read()
                figures["openapi_status"] = response.status
            figures["openapi_s"] = time.monotonic() - document_started
            figures["openapi_mb"] = len(document) / 2**20
            # One element's part of it, and a client generated from that part.
            part_started = time.monotonic()
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"http://127.0.0.1:{settings.http_port}/schema/openapi/{element.name}.json"
                ) as response,
            ):
                part = await response.read()
                figures["openapi_part_status"] = response.status
            figures["openapi_part_s"] = time.monotonic() - part_started
            figures["openapi_part_kb"] = len(part) / 2**10
            figures["client_part_s"] = await asyncio.to_thread(generation_seconds, part)
            figures["api_rss_mb"] = process.memory_info().rss / 2**20
            server.should_exit = True
            await serving
    finally:
        await drop_database(settings.database_url)
    return figures


def generation_seconds(document: bytes) -> float | None:
    """Seconds openapi-python-client (beside this Python) takes to generate a client from `document`;
    None without it."""
    import subprocess
    import tempfile
    from pathlib import Path

    generator = Path(sys.executable).with_name("openapi-python-client")
    if not generator.exists():
        return None
    with tempfile.TemporaryDirectory() as where:
        source, config = Path(where, "part.json"), Path(where, "config.yaml")
        source.write_bytes(document)
        config.write_text("post_hooks: []\n")
        started = time.monotonic()
        subprocess.run(
            [
                *(str(generator), "generate", "--path", str(source), "--meta", "none"),
                *("--output-path", str(Path(where, "client")), "--config", str(config)),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        return time.monotonic() - started


def run_in_subprocess(elements: int = SEED_ELEMENTS, attributes: int = SEED_ATTRIBUTES) -> dict[str, Any]:
    """Measure in a fresh Python process, so its memory is the model's and the API's alone."""
    import subprocess

    code = (
        "import asyncio, json, sys; from core.stopping import stoppable; "
        "from erp.bench.model_scale import measure; "
        f"print(json.dumps(asyncio.run(stoppable(measure({elements}, {attributes})))))"
    )
    # Its own session: a Ctrl-C reaches it once, as the SIGTERM below, so its clean-up is not cut short.
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=900)
        except BaseException:
            child.terminate()  # it drops its database on the way out
            child.wait(timeout=60)
            raise
    if child.returncode != 0:
        raise RuntimeError(f"the model-scale measurement exited with {child.returncode}:\n{stderr}")
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return figures


def report_model_scale(json_path: str | None = None) -> dict[str, Any]:
    """Run the seed-scale measurement and print it against its targets (60 s, 1 GB)."""
    from rich.console import Console
    from rich.table import Table

    figures = run_in_subprocess()
    table = Table(
        title=f"model at seed scale: {figures['elements']:,} elements, {figures['attributes']:,} attributes"
    )
    table.add_column("step")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    for label, key, unit in (
        ("build the model (types, handlers, aggregates)", "build_model_s", "s"),
        ("create the read-model tables", "create_tables_s", "s"),
        (f"start the API ({figures['commands']:,} commands)", "start_api_s", "s"),
        ("serve the first command into its read model", "first_command_s", "s"),
    ):
        table.add_row(label, f"{figures[key]:.1f} {unit}", "")
    table.add_row("total, model to first command served", f"{figures['total_s']:.1f} s", "≤ 60 s")
    table.add_row(
        "API process memory (RSS), OpenAPI document included", f"{figures['api_rss_mb']:.0f} MB", "≤ 1,024 MB"
    )
    table.add_row(
        f"then the OpenAPI document, first request (HTTP {figures['openapi_status']}, "
        f"{figures['openapi_mb']:.0f} MB)",
        f"{figures['openapi_s']:.1f} s",
        "",
    )
    table.add_row(
        f"one element's part of it (/schema/openapi/<Element>.json, {figures['openapi_part_kb']:.0f} KB)",
        f"{figures['openapi_part_s']:.2f} s",
        "",
    )
    if figures.get("client_part_s") is not None:
        table.add_row("openapi-python-client on that part", f"{figures['client_part_s']:.1f} s", "")
    Console(width=120).print(table)
    Console(width=120).print(
        f"first command: HTTP {figures['first_command_status']}, read model row {figures['first_row']}"
    )
    if json_path:
        with open(json_path, "w") as out:
            json.dump(figures, out, indent=2)
    return figures
