"""The `erp` command line: dev, api, worker, migrate, accounts, projections and bench.

One module per command group: `serve` (api, worker), `dev`, `migrate`, `accounts`, `projections`
and `bench`; each gets its pools, stores and clients from the composition root
(`erp.bootstrap.Container`), through `common.running`.
"""

from __future__ import annotations

import typer

from erp.cli import accounts, bench, dev, migrate, projections, serve

app = typer.Typer(help="A multi-tenant, event-sourced ERP backend.", no_args_is_help=True)
app.command()(migrate.migrate)
app.command()(serve.api)
app.command()(serve.worker)
app.command()(dev.dev)
app.command()(bench.bench)
app.add_typer(accounts.app, name="accounts")
app.add_typer(projections.app, name="projections")

__all__ = ["app"]
