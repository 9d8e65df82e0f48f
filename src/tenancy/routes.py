"""Operator API for accounts: POST /accounts, GET /accounts/{AccountId}."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from erp.bootstrap import Services
from erp.problems import problem, problem_responses
from erp.text import Name
from tenancy.accounts import Account, AccountCatalog
from tenancy.auth import operator_guard
from workflows.starters import open_account


class CreateAccount(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    name: Name


class CreatedAccount(msgspec.Struct, rename="pascal"):
    account_id: UUID
    api_key: str
    status: str


class AccountView(msgspec.Struct, rename="pascal"):
    account_id: UUID
    name: str
    status: str


class AccountController(Controller):
    path = "/accounts"
    tags = ["operators"]
    guards = [operator_guard]

    @post("/", status_code=201, summary="Onboard an account", responses=problem_responses(400, 401, 422, 503))
    async def create(
        self, data: JSONBody[CreateAccount], services: NamedDependency[Services]
    ) -> CreatedAccount:
        """Register an account, give it its event-store partition (a workflow) and its first API key.

        Status is Active when onboarding finished within 15 s, else Onboarding: the workflow goes on,
        and until it ends the key is answered 503 with Retry-After.
        """
        name = data.name.strip()
        if not name:
            raise problem(422, "Name must not be blank")
        client = await services.temporal.client()
        account, api_key, status = await open_account(
            services.catalog,
            services.databases.main,
            services.databases.names(),
            client,
            services.settings.task_queue,
            name,
        )
        return CreatedAccount(account.account_id, api_key, status)

    @get("/{account_id:uuid}", summary="Show an account", responses=problem_responses(400, 401, 404, 503))
    async def show(self, account_id: FromPath[UUID], services: NamedDependency[Services]) -> AccountView:
        account = await _get(services.catalog, account_id)
        return AccountView(account.account_id, account.name, account.status)


async def _get(catalog: AccountCatalog, account_id: UUID) -> Account:
    account = await catalog.get(account_id)
    if account is None:
        raise problem(404, f"there is no account {account_id}")
    return account
