"""OpenTelemetry setup: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, console when ERP_TRACE_CONSOLE=1."""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def configure_telemetry(service_name: str, *processors: SpanProcessor) -> TracerProvider | None:
    """Install a global tracer provider once; tests pass an in-memory exporter's processor."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            for processor in processors:
                provider.add_span_processor(processor)
            return provider
        return None
    exporters: list[SpanProcessor] = list(processors)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(BatchSpanProcessor(OTLPSpanExporter()))
    if os.environ.get("ERP_TRACE_CONSOLE") == "1":
        exporters.append(BatchSpanProcessor(ConsoleSpanExporter()))
    _configured = True
    if not exporters:
        return None  # the API's no-op tracer: no cost when nobody collects
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for processor in exporters:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("ERP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
