"""The system's OpenTelemetry metrics: instruments, and the gauges' latest readings.

Instruments come from the global meter, so they cost nothing until
`configure_telemetry` installs a MeterProvider (OTLP, console or a test reader).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("erp")

COMMANDS = meter.create_counter("erp.commands", unit="{command}", description="Commands by name and outcome")
COMMAND_DURATION = meter.create_histogram(
    "erp.command.duration", unit="s", description="Command latency by name and outcome"
)
COMMANDS_LIMITED = meter.create_counter(
    "erp.commands.limited", unit="{command}", description="Commands refused: their account was over its rate"
)
EVENTS_APPENDED = meter.create_counter("erp.events.appended", unit="{event}", description="Events stored")
APPEND_BATCH_SIZE = meter.create_histogram(
    "erp.append.batch_size", unit="{append}", description="Appends carried by one group-commit batch"
)
EVENTS_PROJECTED = meter.create_counter("erp.events.projected", unit="{event}", description="Events applied")
EVENTS_PARKED = meter.create_counter(
    "erp.events.parked", unit="{event}", description="Events a projection could not apply"
)
EVENTS_HELD = meter.create_counter(
    "erp.events.held",
    unit="{event}",
    description="Events parked behind an earlier event of their stream that a projection could not apply",
)
PROJECTION_DELAY = meter.create_histogram(
    "erp.projection.delay", unit="s", description="From an event's commit to its read model's commit"
)
NOTIFICATION_DELAY = meter.create_histogram(
    "erp.notification.delay", unit="s", description="From an event's commit to its Redis notification"
)

LAG: dict[tuple[str, str], int] = {}
"""(projection, database) -> events the projection is behind, as its projector last saw."""
REBUILDS: dict[tuple[str, str], float] = {}
"""(projection, scope) -> fraction of events a running rebuild has applied."""


def _lag(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(v, {"projection": p, "database": d}) for (p, d), v in list(LAG.items())]


def _rebuilds(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(v, {"projection": p, "scope": s}) for (p, s), v in list(REBUILDS.items())]


meter.create_observable_gauge(
    "erp.projection.lag", callbacks=[_lag], unit="{event}", description="Events not yet applied"
)
meter.create_observable_gauge(
    "erp.rebuild.progress", callbacks=[_rebuilds], unit="1", description="Share of a rebuild done"
)
