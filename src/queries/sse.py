"""Notifications: GET /notifications streams the caller's account's read-model progress (SSE);
POST /notifications/tickets lets a browser's EventSource (which sends no headers) open it.

A browser's page, not its EventSource, resumes the stream: a ticket is good once, so the
EventSource's own reconnect (the same URL) is refused, and a new EventSource never sends the
Last-Event-ID header. On the EventSource's error the page closes it, asks a new ticket and opens
`GET /notifications?Ticket=<new>&LastEventId=<the last event id it saw>` (`LAST_EVENT_ID`, as
Mercure's hubs take it). A client that can send headers keeps `Last-Event-ID`, which wins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent

from core.problems import problem_responses
from queries.notification_stream import NotificationStreams
from tenancy.auth import TENANT_SECURITY
from tenancy.routing import Route
from tenancy.tickets import StreamTickets

LAST_EVENT_ID = "LastEventId"
"""The query parameter that stands for the Last-Event-ID header (not a secret: positions only)."""
RETRY_MS = 2000
"""The stream's `retry:` hint, in milliseconds: how long a client that reconnects by itself (with
the header) waits first, so the streams a stopping server ends do not all come back at once."""
STREAM = (
    'Server-Sent Events: `{"Projection","StreamType","Position"}` for the caller\'s account only, each '
    "with an id to resume from; `: ping` while idle; `event: overflow` before it closes a stream read "
    f"too slowly; first `retry: {RETRY_MS}`, the delay asked of a client before it reconnects.\n\n"
    "To resume, send the last id seen as the `Last-Event-ID` header or, where headers cannot be sent, "
    f"as the `{LAST_EVENT_ID}` query parameter (the header wins when both are sent): the stream first "
    "tells the current position of each read model and stream type that moved since, then live events.\n\n"
    "A browser's EventSource cannot resume by itself: its own reconnect reuses a ticket already used "
    "(401, and it gives up), and a new EventSource sends no Last-Event-ID. On its `error`, close it, ask "
    f"POST /notifications/tickets for a new ticket and open `/notifications?Ticket=<new>&{LAST_EVENT_ID}="
    "<the last event's id>`, backing off while that fails."
)
NOT_COMPRESSED = "not_compressed"
"""A handler's opt key that keeps its answer uncompressed (the SSE stream: gzip would hold its
events back until a block fills)."""


class TicketIssued(msgspec.Struct, frozen=True, rename="pascal"):
    ticket: str
    expires_at: datetime


class NotificationController(Controller):
    path = "/notifications"
    tags = ["notifications"]
    security = TENANT_SECURITY

    @get(
        "/",
        summary="Stream read-model notifications (SSE)",
        description=STREAM,
        operation_id="streamNotifications",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                str,
                description='Server-Sent Events, `data: {"Projection","StreamType","Position"}` each, with '
                "`id:`; the stream does not end (read it as a stream, not as one body)",
                media_type="text/event-stream",
                generate_examples=False,
            ),
            **problem_responses(401, 429, 503),
        },
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
        last_event_id_query: Annotated[
            str | None,
            QueryParameter(
                name=LAST_EVENT_ID,
                required=False,
                description="The last event's id, for a client that cannot send the Last-Event-ID "
                "header (a new EventSource); the header wins when both are sent",
            ),
        ] = None,
    ) -> ServerSentEvent:
        """The stream (`STREAM`, in the OpenAPI document)."""
        resume_from = last_event_id if last_event_id is not None else last_event_id_query
        return ServerSentEvent(notification_streams.events(listener, resume_from), retry_duration=RETRY_MS)

    @post(
        "/tickets",
        summary="A ticket to open the stream without headers",
        operation_id="issueStreamTicket",
        responses=problem_responses(401, 429, 503),
    )
    async def ticket(
        self, command_tenant: NamedDependency[Route], tickets: NamedDependency[StreamTickets]
    ) -> TicketIssued:
        """A single-use ticket for `GET /notifications?Ticket=…`, good for about a minute. It counts as
        a command against the account's rate limit, which bounds the tickets Redis holds for it."""
        issued = await tickets.issue(command_tenant)
        return TicketIssued(issued.ticket, datetime.fromtimestamp(issued.expires_at, UTC))
