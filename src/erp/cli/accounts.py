"""`erp accounts ...`: tenant accounts."""

from __future__ import annotations

import asyncio

import typer

from core.settings import Settings
from erp.cli.common import console, running

app = typer.Typer(help="Tenant accounts.", no_args_is_help=True)


@app.command("create")
def accounts_create(name: str) -> None:
    """Onboard an account (needs a running worker) and print its API key."""
    settings = Settings()

    async def main() -> None:
        async with running(settings) as container:
            account, api_key, status = await container.onboarding.open(name)
        console.print(
            f"AccountId {account.account_id}\nApiKey    {api_key}\nStatus    {status}\n"
            f"Database  {account.database}"
        )

    asyncio.run(main())
