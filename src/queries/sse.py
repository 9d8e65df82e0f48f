"""Notifications: GET /notifications streams the caller's account's read-model progress (SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Controller, get
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.response import ServerSentEvent

from core.problems import problem_responses
from queries.notifications import channel_for
from tenancy.auth import TENANT_SECURITY
from tenancy.routing import Route


class NotificationController(Controller):
    path = "/notifications"
    tags = ["notifications"]
    security = TENANT_SECURITY

    @get(
        "/",
        summary="Stream read-model notifications (SSE)",
        operation_id="streamNotifications",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                str,
                description='Server-Sent Events, `data: {"Projection","StreamType","Position"}` each; '
                "the stream does not end (read it as a stream, not as one body)",
                media_type="text/event-stream",
                generate_examples=False,
            ),
            **problem_responses(401, 429, 503),
        },
    )
    async def stream(
        self, tenant: NamedDependency[Route], channels: NamedDependency[ChannelsPlugin]
    ) -> ServerSentEvent:
        """Server-Sent Events: `{"Projection","StreamType","Position"}` for the caller's account only."""

        async def events() -> AsyncIterator[str]:
            async with channels.start_subscription(channel_for(tenant.account_id)) as subscriber:
                async for message in subscriber.iter_events():
                    yield message.decode()

        return ServerSentEvent(events())
