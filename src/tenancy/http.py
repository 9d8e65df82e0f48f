"""Operator API for accounts (the app guards it): GET and POST /accounts, POST /accounts/import, GET
/accounts/{AccountId}, GET /accounts/imports/{ImportId}, and POST and GET /accounts/{AccountId}/move
and /accounts/{AccountId}/offboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody, QueryParameter

from core.problems import FieldError, problem, problem_responses
from core.strict_body import StrictBody
from core.text import Name
from tenancy.catalog import AccountCatalog, AccountStatus, ImportState
from tenancy.imports import MAX_REPORTED, BadImport, parse_import
from tenancy.moves import AccountMoves, MoveProgress, MoveRefused
from tenancy.offboards import AccountOffboards, OffboardProgress, OffboardRefused
from tenancy.onboarding import Onboarding

MAX_IMPORT_BODY = 16 * 1024 * 1024
"""An import's body: 100,000 accounts as JSON lines fit."""

MAX_LISTED = 10_000
"""Accounts GET /accounts lists at most (its Limit's ceiling)."""


class CreateAccount(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    name: Name


AccountState = Literal["Onboarding", "Active", "Offboarding"]
"""An account's status (`tenancy.catalog.AccountStatus`): an enum in the OpenAPI document."""
Onboarded = Literal["Onboarding", "Active"]
"""How far an onboarding is."""


def _state(status: str) -> Any:
    """The catalog's status column, which holds only `AccountStatus`'s values, as an AccountState."""
    return status


class CreatedAccount(msgspec.Struct, rename="pascal"):
    account_id: UUID
    api_key: str
    status: Onboarded


class AccountView(msgspec.Struct, rename="pascal"):
    account_id: UUID
    name: str
    status: AccountState


class ListedAccountView(msgspec.Struct, rename="pascal"):
    account_id: UUID
    name: str
    status: AccountState
    database: str


class ImportedAccountView(msgspec.Struct, rename="pascal"):
    line: int
    account_id: UUID
    name: str
    api_key: str


class ImportView(msgspec.Struct, rename="pascal"):
    import_id: UUID
    workflow_id: str | None
    """None if the workflow could not be started yet (the worker's sweep starts it)."""
    status: Onboarded
    """Active once every account is; Onboarding while the workflow goes on (GET the import)."""
    accounts: list[ImportedAccountView]


class ImportStateView(msgspec.Struct, rename="pascal"):
    import_id: UUID
    accounts: int
    active: int
    status: Onboarded

    @classmethod
    def of(cls, state: ImportState) -> ImportStateView:
        status: Onboarded = AccountStatus.ACTIVE if state.finished else AccountStatus.ONBOARDING
        return cls(state.import_id, state.accounts, state.active, status)


class MoveAccount(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """The tenant database to move to (one of ERP_DATABASES' names, or main)."""


class MoveStarted(msgspec.Struct, rename="pascal"):
    account_id: UUID
    workflow_id: str
    source: str = msgspec.field(name="From")
    target: str = msgspec.field(name="To")


class MoveView(msgspec.Struct, rename="pascal"):
    workflow_id: str
    status: str
    source: str = msgspec.field(name="From")
    target: str = msgspec.field(name="To")
    phase: str = ""
    events_copied: int = 0
    events_to_copy: int = 0
    fenced_seconds: float | None = None
    error: str | None = None

    @classmethod
    def of(cls, progress: MoveProgress) -> MoveView:
        return cls(
            progress.workflow_id,
            progress.status,
            progress.source,
            progress.target,
            progress.phase,
            progress.events_copied,
            progress.events_to_copy,
            progress.fenced_seconds,
            progress.error,
        )


class OffboardStarted(msgspec.Struct, rename="pascal"):
    account_id: UUID
    workflow_id: str
    database: str


class OffboardView(msgspec.Struct, rename="pascal"):
    workflow_id: str
    status: str
    database: str
    phase: str = ""
    events_exported: int = 0
    events_to_export: int = 0
    export: str | None = None
    """The file its events were written to, on the worker's machine (once they are)."""
    rows_removed: int = 0
    error: str | None = None

    @classmethod
    def of(cls, progress: OffboardProgress) -> OffboardView:
        return cls(
            progress.workflow_id,
            progress.status,
            progress.database,
            progress.phase,
            progress.events_exported,
            progress.events_to_export,
            progress.export,
            progress.rows_removed,
            progress.error,
        )


@dataclass
class ImportOperation(Operation):
    """POST /accounts/import in the OpenAPI document: its body is the import file, read as it is."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                # The file as it is, whatever its Content-Type (text/plain too): documented as bytes,
                # which client generators send as they are (text/plain they do not know).
                "application/octet-stream": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                ),
            },
            description="The import file, UTF-8, at most 16 MiB: one account name a line, or JSON lines "
            '({"Name": "Acme"}); blank lines are skipped. Any Content-Type is read as the file.',
            required=True,
        )


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post(
        "/",
        status_code=201,
        summary="Onboard an account",
        operation_id="createAccount",
        responses=problem_responses(400, 401, 422, 503),
        dto=StrictBody[CreateAccount],
        return_dto=None,
    )
    async def create(
        self, data: JSONBody[CreateAccount], onboarding: NamedDependency[Onboarding]
    ) -> CreatedAccount:
        """Register an account, onboard it (a workflow) and give it its first API key.

        Status is Active when onboarding finished within 15 s, else Onboarding: the workflow goes on,
        and until it ends the key is answered 503 with Retry-After.
        """
        name = data.name.strip()
        if not name:
            raise problem(422, "Name must not be blank")
        account, api_key, status = await onboarding.open(name)
        return CreatedAccount(account.account_id, api_key, _state(status))

    @get(
        "/",
        summary="List accounts, their status and database",
        operation_id="listAccounts",
        responses=problem_responses(401, 422, 503),
    )
    async def list_accounts(
        self,
        catalog: NamedDependency[AccountCatalog],
        limit: Annotated[
            int,
            QueryParameter(
                name="Limit", ge=1, le=MAX_LISTED, description="At most this many (the oldest first)."
            ),
        ] = 1000,
    ) -> list[ListedAccountView]:
        """Accounts in the order they were opened, at most `Limit` (1,000 by default, 10,000 at most)."""
        return [
            ListedAccountView(a.account_id, a.name, _state(a.status), a.database)
            for a in await catalog.list(limit)
        ]

    @post(
        "/import",
        status_code=201,
        summary="Onboard many accounts (one workflow)",
        operation_id="importAccounts",
        responses=problem_responses(401, 413, 422, 503),
        request_max_body_size=MAX_IMPORT_BODY,
        operation_class=ImportOperation,
    )
    async def import_accounts(
        self, request: Request[Any, Any, Any], onboarding: NamedDependency[Onboarding]
    ) -> ImportView:
        """The body is an import file: one account name a line, or JSON lines `{"Name": "..."}`.

        Every account is registered with its API key, all or none (a bad line, reported by number,
        opens nobody), then onboarded by one workflow. The keys are in this answer only. Status is
        Active when the workflow finished within 15 s, else Onboarding (GET /accounts/imports/{Id}).
        """
        try:
            entries = parse_import(await request.body())
        except BadImport as error:
            reported = error.problems[:MAX_REPORTED]
            errors = [{"Line": line, "Detail": detail} for line, detail in reported]
            # `Errors` names the lines as numbers; `errors`, as every 422's, says them as text.
            said = [FieldError(f"line {line}: {detail}") for line, detail in reported]
            raise problem(422, str(error), extra={"Errors": errors}, errors=said) from None
        imported = await onboarding.import_accounts(entries)
        done = await onboarding.wait_import(imported.import_id)
        return ImportView(
            imported.import_id,
            imported.workflow_id,
            AccountStatus.ACTIVE if done else AccountStatus.ONBOARDING,
            [
                ImportedAccountView(a.entry.line, a.account.account_id, a.account.name, a.api_key)
                for a in imported.accounts
            ],
        )

    @get(
        "/imports/{import_id:uuid}",
        summary="How far an import is",
        operation_id="getImport",
        responses=problem_responses(400, 401, 404, 503),
    )
    async def show_import(
        self, import_id: FromPath[UUID], catalog: NamedDependency[AccountCatalog]
    ) -> ImportStateView:
        state = await catalog.import_state(import_id)
        if state is None:
            raise problem(404, f"there is no import {import_id}")
        return ImportStateView.of(state)

    @post(
        "/{account_id:uuid}/move",
        status_code=202,
        summary="Move an account to another tenant database (a workflow)",
        operation_id="moveAccount",
        responses=problem_responses(400, 401, 404, 409, 422, 503),
        dto=StrictBody[MoveAccount],
        return_dto=None,
    )
    async def move(
        self, account_id: FromPath[UUID], data: JSONBody[MoveAccount], moves: NamedDependency[AccountMoves]
    ) -> MoveStarted:
        """Copy the account's data to the database `To`, switch its route, then remove the old copy.

        Its commands are answered 503 with Retry-After for the few seconds of the switch; nothing
        is lost or stored twice, and consistency tokens issued before hold after. Follow it with
        GET /accounts/{AccountId}/move.
        """
        try:
            account, workflow_id = await moves.start(account_id, data.to)
        except MoveRefused as refused:
            raise problem(refused.status, str(refused)) from None
        return MoveStarted(account.account_id, workflow_id, account.database, data.to)

    @get(
        "/{account_id:uuid}/move",
        summary="How far an account's latest move is",
        operation_id="getMove",
        responses=problem_responses(400, 401, 404, 503),
    )
    async def show_move(self, account_id: FromPath[UUID], moves: NamedDependency[AccountMoves]) -> MoveView:
        progress = await moves.progress(account_id)
        if progress is None:
            raise problem(404, f"account {account_id} has not been moved")
        return MoveView.of(progress)

    @post(
        "/{account_id:uuid}/offboard",
        status_code=202,
        summary="Offboard an account: revoke its keys, export its events, remove it (a workflow)",
        operation_id="offboardAccount",
        responses=problem_responses(400, 401, 404, 409, 503),
    )
    async def offboard(
        self, account_id: FromPath[UUID], offboards: NamedDependency[AccountOffboards]
    ) -> OffboardStarted:
        """Revoke the account's API keys and refuse its writes at once, export its events (JSON
        lines, upcast) to ERP_EXPORT_DIR on the worker, then remove every row of it. It takes no
        body (one sent is not read). Other accounts are not held up. Follow it with
        GET /accounts/{AccountId}/offboard.
        """
        try:
            account, workflow_id = await offboards.start(account_id)
        except OffboardRefused as refused:
            raise problem(refused.status, str(refused)) from None
        return OffboardStarted(account.account_id, workflow_id, account.database)

    @get(
        "/{account_id:uuid}/offboard",
        summary="How far an account's offboarding is",
        operation_id="getOffboard",
        responses=problem_responses(400, 401, 404, 503),
    )
    async def show_offboard(
        self, account_id: FromPath[UUID], offboards: NamedDependency[AccountOffboards]
    ) -> OffboardView:
        progress = await offboards.progress(account_id)
        if progress is None:
            raise problem(404, f"account {account_id} has not been offboarded")
        return OffboardView.of(progress)

    @get(
        "/{account_id:uuid}",
        summary="Show an account",
        operation_id="getAccount",
        responses=problem_responses(400, 401, 404, 503),
    )
    async def show(self, account_id: FromPath[UUID], catalog: NamedDependency[AccountCatalog]) -> AccountView:
        account = await catalog.get(account_id)
        if account is None:
            raise problem(404, f"there is no account {account_id}")
        return AccountView(account.account_id, account.name, _state(account.status))
