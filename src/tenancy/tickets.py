"""Stream tickets: a browser's EventSource cannot send an Authorization header, so a client trades
its API key for a ticket (`POST /notifications/tickets`) and opens `GET /notifications?Ticket=…`.

A ticket is 256 random bits, good once and for `ttl` seconds, bound to the account whose key asked
for it. It is kept in Redis, so any API process takes it, on one server or a cluster (one key per
ticket: SET with EX, then GETDEL, each a single-key command on the key's own shard). Redis holds the
ticket's SHA-256 only: a copy of Redis's data opens no stream.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from uuid import UUID

import msgspec

from core.problems import problem
from core.redis_client import REDIS_UNAVAILABLE, RedisClient
from tenancy.routing import Route

KEY_PREFIX = "erp.stream-ticket."
TICKET_BYTES = 32
MAX_TICKET = 64
"""Characters a ticket has at most (43 as issued); a longer one is refused unhashed."""


class _Held(msgspec.Struct, frozen=True):
    account_id: UUID
    database: str


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket: str
    expires_at: float
    """Unix time."""


def _key(ticket: str) -> str:
    return KEY_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


class StreamTickets:
    """Issues and redeems single-use tickets for one account's notification stream."""

    def __init__(self, redis: RedisClient, ttl: int) -> None:
        if ttl < 1:
            raise ValueError(f"ERP_SSE_TICKET_TTL must be at least 1 second, got {ttl}")
        self._redis = redis
        self._ttl = ttl
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(_Held).decode

    async def issue(self, route: Route) -> Ticket:
        """A new ticket for `route`'s account; 503 while Redis cannot keep it."""
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        try:
            await self._redis.set(
                _key(ticket), self._encode(_Held(route.account_id, route.database)), ex=self._ttl, nx=True
            )
        except REDIS_UNAVAILABLE as error:
            raise problem(503, "Redis is unavailable; try again shortly", {"Retry-After": "1"}) from error
        return Ticket(ticket, time.time() + self._ttl)

    async def redeem(self, ticket: str) -> Route | None:
        """The route the ticket was issued for, once: None for a ticket unknown, expired or used.
        503 while Redis cannot be asked."""
        if not ticket or len(ticket) > MAX_TICKET:
            return None
        try:
            held = await self._redis.getdel(_key(ticket))
        except REDIS_UNAVAILABLE as error:
            raise problem(503, "Redis is unavailable; try again shortly", {"Retry-After": "1"}) from error
        if held is None:
            return None
        route = self._decode(held)
        return Route(route.account_id, route.database)
