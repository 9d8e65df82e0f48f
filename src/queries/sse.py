"""Notifications: GET /notifications streams the caller's account's read-model progress (SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Controller, get
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.response import ServerSentEvent

from core.problems import problem_responses
from queries.notifications import channel_for
from tenancy.routing import Route


class NotificationController(Controller):
    path = "/notifications"
    tags = ["queries"]

    @get("/", summary="Stream read-model notifications (SSE)", responses=problem_responses(401, 503))
    async def stream(
        self, tenant: NamedDependency[Route], channels: NamedDependency[ChannelsPlugin]
    ) -> ServerSentEvent:
        """Server-Sent Events: `{"Projection","StreamType","Position"}` for the caller's account only."""

        async def events() -> AsyncIterator[str]:
            async with channels.start_subscription(channel_for(tenant.account_id)) as subscriber:
                async for message in subscriber.iter_events():
                    yield message.decode()

        return ServerSentEvent(events())
