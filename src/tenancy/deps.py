"""Tenancy's dependencies for the HTTP layer: `tenant` (the caller's Route, from its API key),
`command_tenant` (the same, once the command fits its account's rate limit, holding one of the
account's few slots in this process), `listener` (the caller's Route from its API key or from a
stream ticket, for `GET /notifications`), `tickets`, and for operators `onboarding`, `catalog`, `moves` and
`offboards`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from core.bodies import MAX_BODY
from core.problems import problem
from core.secret_query import TICKET
from core.telemetry import ACCOUNT_ID
from tenancy.auth import authenticate, bearer_token, client_address, refuse_if_over
from tenancy.auth_failures import AuthFailures
from tenancy.bulkhead import HEAVY_BODY, AccountBulkhead
from tenancy.byte_budget import ByteBudget, over_budget
from tenancy.catalog import AccountCatalog
from tenancy.fences import AccountElsewhere
from tenancy.keys import KeyCache
from tenancy.moves import AccountMoves
from tenancy.offboards import AccountOffboards
from tenancy.onboarding import Onboarding
from tenancy.rate_limit import REPEAT_PAUSE, AccountRateLimiter, Refused
from tenancy.routing import Route
from tenancy.tickets import StreamTickets

BAD_TICKET = "the ticket is unknown, expired or used already; ask POST /notifications/tickets for another"

CHUNKED = MAX_BODY
"""Bytes a body sent without Content-Length (chunked) is charged: the most a body may be (the
app's limit), since its size is known only once it is read."""


def tenancy_dependencies(
    keys: KeyCache,
    onboarding: Onboarding,
    catalog: AccountCatalog,
    moves: AccountMoves,
    offboards: AccountOffboards,
    limiter: AccountRateLimiter | None,
    bulkhead: AccountBulkhead,
    failures: AuthFailures | None,
    budget: ByteBudget | None,
    tickets: StreamTickets,
) -> dict[str, Provide]:
    """`limiter` None: no rate limit (ERP_COMMAND_RATE=0); `failures` None: no limit on failed
    authentications (ERP_AUTH_FAILURES=0); `budget` None: no byte budget (ERP_ACCOUNT_BYTES=0)."""

    async def tenant(request: Request[Any, Any, Any]) -> AsyncIterator[Route]:
        route = await authenticate(keys, request, failures)
        try:
            yield route
        except AccountElsewhere:
            # A move fenced the account where its cached route points: look the route up again
            # on the next request, which the client sends after Retry-After.
            keys.forget(bearer_token(request))
            raise

    async def listener(
        request: Request[Any, Any, Any],
        ticket: Annotated[
            str | None,
            QueryParameter(
                name=TICKET,
                required=False,
                description="A ticket from POST /notifications/tickets, instead of the Authorization "
                "header (for a browser's EventSource); good once",
            ),
        ] = None,
    ) -> Route:
        """The stream's account: from its ticket (used up here) when it sends one, else its key."""
        if ticket is None:
            return await authenticate(keys, request, failures)
        refuse_if_over(failures, request)
        route = await tickets.redeem(ticket)
        if route is None:
            if failures is not None:
                failures.failed(client_address(request))
            raise problem(401, BAD_TICKET, {"WWW-Authenticate": "Bearer"})
        ACCOUNT_ID.set(str(route.account_id))
        return route

    async def command_tenant(
        request: Request[Any, Any, Any], tenant: NamedDependency[Route]
    ) -> AsyncIterator[Route]:
        """After authentication (the key decides the account), before the command is even parsed:
        the account's rate limit (a big body costs as several commands), then one of its few slots
        in this process (its one slot for heavy requests too, for a body of HEAVY_BODY or more)."""
        length = request.headers.get("content-length", "")
        chunked = not length.isdigit()
        size = CHUNKED if chunked else int(length)
        if size > MAX_BODY:  # refused before it costs the account anything, as it will be unread
            raise problem(413, f"the body has {size:,} bytes; a command's may have {MAX_BODY:,} at most")
        if limiter is not None:
            # A chunked body's size is known once it is read: one command now, the rest after.
            verdict = limiter.hit(tenant.account_id, cost=1 if chunked else limiter.limit.cost(size))
            if isinstance(verdict, Refused):
                if verdict.repeated:  # it keeps sending over its limit: it waits for its answer
                    await asyncio.sleep(min(REPEAT_PAUSE, verdict.retry_after))
                raise limiter.refusal(tenant.account_id, verdict)
            if verdict is not None:  # at its limit: let through when its turn comes
                await asyncio.sleep(verdict.wait)
        if budget is not None:
            await over_budget(budget, tenant.account_id)
            budget.charge(tenant.account_id, size)
        async with bulkhead.slot(tenant.account_id, heavy=size >= HEAVY_BODY):
            yield tenant
        if chunked and limiter is not None:
            # Reached when the handler returned, so it read the body (Litestar keeps it: no I/O
            # here). A refused one (413, 422) costs its one: the byte budget charged it 1 MiB.
            limiter.charge(tenant.account_id, limiter.limit.cost(len(await request.body())) - 1)

    return {
        "tenant": Provide(tenant),
        "command_tenant": Provide(command_tenant),
        "listener": Provide(listener),
        "tickets": Provide(lambda: tickets, use_cache=True, sync_to_thread=False),
        "bulkhead": Provide(lambda: bulkhead, use_cache=True, sync_to_thread=False),
        "onboarding": Provide(lambda: onboarding, use_cache=True, sync_to_thread=False),
        "catalog": Provide(lambda: catalog, use_cache=True, sync_to_thread=False),
        "moves": Provide(lambda: moves, use_cache=True, sync_to_thread=False),
        "offboards": Provide(lambda: offboards, use_cache=True, sync_to_thread=False),
    }
