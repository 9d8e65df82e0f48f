"""Operator API for accounts: POST /accounts, GET /accounts/{AccountId} (the app guards it)."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from core.problems import problem, problem_responses
from core.text import Name
from tenancy.catalog import AccountCatalog
from tenancy.onboarding import Onboarding


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

    @post("/", status_code=201, summary="Onboard an account", responses=problem_responses(400, 401, 422, 503))
    async def create(
        self, data: JSONBody[CreateAccount], onboarding: NamedDependency[Onboarding]
    ) -> CreatedAccount:
        """Register an account, give it its event-store partition (a workflow) and its first API key.

        Status is Active when onboarding finished within 15 s, else Onboarding: the workflow goes on,
        and until it ends the key is answered 503 with Retry-After.
        """
        name = data.name.strip()
        if not name:
            raise problem(422, "Name must not be blank")
        account, api_key, status = await onboarding.open(name)
        return CreatedAccount(account.account_id, api_key, status)

    @get("/{account_id:uuid}", summary="Show an account", responses=problem_responses(400, 401, 404, 503))
    async def show(self, account_id: FromPath[UUID], catalog: NamedDependency[AccountCatalog]) -> AccountView:
        account = await catalog.get(account_id)
        if account is None:
            raise problem(404, f"there is no account {account_id}")
        return AccountView(account.account_id, account.name, account.status)
