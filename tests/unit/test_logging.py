"""Structured logs carry the trace id and the AccountId."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from core.telemetry import ACCOUNT_ID, JsonFormatter, TraceContext


def test_a_log_line_names_its_trace_and_account() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("erp.test", logging.WARNING, __file__, 1, "placed %s", ("order",), None)
    token = ACCOUNT_ID.set("3f1c0000-0000-0000-0000-000000000001")
    try:
        with tracer.start_as_current_span("command") as span:
            assert TraceContext().filter(record)
            line = json.loads(JsonFormatter().format(record))
    finally:
        ACCOUNT_ID.reset(token)
    assert line["message"] == "placed order"
    assert line["level"] == "WARNING"
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["account_id"] == "3f1c0000-0000-0000-0000-000000000001"


def test_outside_a_trace_the_fields_are_empty() -> None:
    record = logging.LogRecord("erp.test", logging.INFO, __file__, 1, "idle", (), None)
    TraceContext().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["account_id"]) == ("", "")
