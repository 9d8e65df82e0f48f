"""Connecting to Temporal, with OpenTelemetry tracing of workflows and activities.

The SDK's core (Rust) writes its own log lines to stderr in its own format; the runtime here forwards
them to the `temporalio.core` logger instead, so they come out as JSON lines like every other log line.
"""

from __future__ import annotations

import logging
from functools import cache

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from erp.settings import Settings


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
