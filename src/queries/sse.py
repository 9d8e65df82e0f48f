"""Notifications: GET /notifications streams the caller's account's read-model progress (SSE);
POST /notifications/tickets lets a browser's EventSource (which sends no headers) open it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent

from core.problems import problem_responses
from queries.notification_stream import NotificationStreams
from tenancy.routing import Route
from tenancy.tickets import StreamTickets

NOT_COMPRESSED = "not_compressed"
"""A handler's opt key that keeps its answer uncompressed (the SSE stream: gzip would hold its
events back until a block fills)."""


class TicketIssued(msgspec.Struct, frozen=True, rename="pascal"):
    ticket: str
    expires_at: datetime


class NotificationController(Controller):
    path = "/notifications"
    tags = ["queries"]

    @get(
        "/",
        summary="Stream read-model notifications (SSE)",
        responses=problem_responses(401, 503),
        opt={NOT_COMPRESSED: True},
    )
    async def stream(
        self,
        listener: NamedDependency[Route],
        notification_streams: NamedDependency[NotificationStreams],
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                required=False,
                description="The last event's id: the stream first tells what moved since",
            ),
        ] = None,
    ) -> ServerSentEvent:
        """Server-Sent Events: `{"Projection","StreamType","Position"}` for the caller's account only,
        each with an id to resume from; `: ping` while idle; `event: overflow` before it closes a
        stream read too slowly."""
        return ServerSentEvent(notification_streams.events(listener, last_event_id))

    @post(
        "/tickets",
        summary="A ticket to open the stream without headers",
        responses=problem_responses(401, 429, 503),
    )
    async def ticket(
        self, command_tenant: NamedDependency[Route], tickets: NamedDependency[StreamTickets]
    ) -> TicketIssued:
        """A single-use ticket for `GET /notifications?Ticket=…`, good for about a minute. It counts as
        a command against the account's rate limit, which bounds the tickets Redis holds for it."""
        issued = await tickets.issue(command_tenant)
        return TicketIssued(issued.ticket, datetime.fromtimestamp(issued.expires_at, UTC))
