"""Connecting to Temporal, with OpenTelemetry tracing of workflows and activities.

The SDK's core (Rust) writes its own log lines to stderr in its own format; the runtime here forwards
them to the `temporalio.core` logger instead, so they come out as JSON lines like every other log line.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cache

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from core.deployment import Deployment
from core.settings import Settings


class TemporalUnavailable(Exception):
    """Temporal could not be reached (refused, timed out, or something else answered on its port)."""


@cache
def temporal_runtime() -> Runtime:
    """One runtime per process (the SDK's rule), its core logs forwarded to Python logging."""
    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"), append_target_to_name=False)
    filter = TelemetryFilter(core_level="WARN", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=filter, forwarding=forwarding)))


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=[TracingInterceptor()],
        runtime=temporal_runtime(),
    )


class TemporalGateway:
    """A Temporal client connected on first use, so the API starts (and reports 503) without Temporal."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._deployment: Deployment | None = None
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    def identify(self, deployment: Deployment) -> None:
        """Whose workflows these are (read from the catalog when the process starts)."""
        self._deployment = deployment

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise RuntimeError("the deployment is not known yet: the composition root reads it on start")
        return self._deployment

    @property
    def task_queue(self) -> str:
        """ERP_TASK_QUEUE if set, else the deployment's own (its name): never another deployment's."""
        return self._settings.task_queue or self.deployment.name

    async def client(self) -> Client:
        """The client; TemporalUnavailable if Temporal cannot be reached within 5 s."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(connect_temporal(self._settings), 5)
                    except (RuntimeError, TimeoutError) as error:  # the SDK's "Failed client connect"
                        raise TemporalUnavailable(str(error)) from error
        return self._client
