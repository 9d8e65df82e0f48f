"""Every error as `application/problem+json` (RFC 9457) with a human-readable `detail`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
import msgspec
import sqlalchemy.exc
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from temporalio.service import RPCError

from core.bodies import EMPTY_BODY, InvalidBody, MalformedBody
from core.temporal import TemporalUnavailable

log = logging.getLogger(__name__)


class FieldError(msgspec.Struct, omit_defaults=True):
    """One thing wrong with a request (RFC 9457's `errors`): what, and where when it is known."""

    detail: str
    pointer: str | None = None
    """A JSON Pointer (RFC 6901) into the body: `/OrderLines/0/UnitPrice`."""
    parameter: str | None = None
    """A query or header parameter, by name: `Limit`."""


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """The body of every error (RFC 9457), as documented in OpenAPI."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    errors: list[FieldError] | None = None
    """What is wrong, each thing with where it is; always present on a 422."""


PROBLEM_EXAMPLE = {
    "type": "about:blank",
    "status": 422,
    "title": HTTPStatus(422).phrase,  # as every answer's title: this Python's phrase
    "detail": "PlaceOrder: UnitPrice must be an amount of money, a string of digits with at most 2 decimals, "
    "from 0 to 1000000000000, such as \"10.00\"; got '1e3' - at `$.OrderLines[0]`",
    "errors": [
        {
            "pointer": "/OrderLines/0/UnitPrice",
            "detail": "UnitPrice must be an amount of money, a string of digits with at most 2 decimals, "
            "from 0 to 1000000000000, such as \"10.00\"; got '1e3'",
        }
    ],
}


def problem_schemas() -> dict[str, dict[str, Any]]:
    """ProblemDetails' and FieldError's JSON Schemas, ProblemDetails with a realistic example: the one
    schema every error response of the OpenAPI document refers to. Members an answer leaves out are
    optional, never null."""
    text = {"type": "string"}
    return {
        "ProblemDetails": {
            "title": "ProblemDetails",
            "description": "An error (RFC 9457): every error of the API is `application/problem+json`.",
            "type": "object",
            "properties": {
                "type": {**text, "description": "about:blank: `status` and `title` say what it is."},
                "status": {"type": "integer", "description": "The HTTP status code."},
                "title": {**text, "description": "The status code's standard phrase."},
                "detail": {**text, "description": "What went wrong, for a person to read."},
                "errors": {
                    "type": "array",
                    "description": "Each thing wrong with the request; always present on a 422.",
                    "items": {"$ref": "#/components/schemas/FieldError"},
                },
            },
            "required": ["status", "title", "detail"],
            "example": PROBLEM_EXAMPLE,
        },
        "FieldError": {
            "title": "FieldError",
            "description": "One thing wrong with a request, and where it is when one place is at fault.",
            "type": "object",
            "properties": {
                "detail": {**text, "description": "What is wrong."},
                "pointer": {**text, "description": "A JSON Pointer (RFC 6901) into the body."},
                "parameter": {**text, "description": "A query or header parameter, by name."},
            },
            "required": ["detail"],
        },
    }


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors an operation can answer, all problem+json."""
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=HTTPStatus(code).phrase,
            media_type="application/problem+json",
            generate_examples=False,
        )
        for code in codes
    }


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    errors: Sequence[FieldError] | None = None,
) -> ProblemDetailsException:
    """A problem+json error with the standard title for `status`; `extra` adds members to the body.

    A 422 always carries `errors`: those given, or the detail alone (a rule refused, no one field)."""
    if errors is None and status == 422:
        errors = [FieldError(detail)]
    if errors is not None:
        extra = {**(extra or {}), "errors": msgspec.to_builtins(list(errors))}
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        type_="about:blank",
        headers=headers,
        extra=extra,
    )


_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NAMED = re.compile(
    r"^(?:Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`|"
    r"(?P<first>[A-Z][A-Za-z0-9]*)(?: must |: ))"
)


def field_error(message: str) -> FieldError:
    """A msgspec validation message (`Expected `str`, got `int` - at `$.OrderLines[0].UnitPrice``) as
    a FieldError with its JSON Pointer. A field the message names first (a missing or unknown field,
    or a check of ours: `UnitPrice must be ...`) ends the pointer."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    detail, path = match["detail"], match["path"] or ""
    steps = [name or index for name, index in _STEP.findall(path)]
    named = _NAMED.match(detail)
    if named is not None:
        steps.append(named["field"] or named["first"])
    if "..." in steps:  # a key of a mapping msgspec does not name
        steps = steps[: steps.index("...")]
    pointer = "".join("/" + step.replace("~", "~0").replace("/", "~1") for step in steps)
    return FieldError(detail, pointer)


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ValidationException):
        if _missing_body(exc):
            return problem(400, EMPTY_BODY, exc.headers)
        # Well-formed input with a wrong, missing or unknown field: 422, naming the field.
        return problem(422, _validation_detail(exc), exc.headers, errors=_parameter_errors(exc))
    if exc.status_code == 400 and isinstance(exc.__cause__, SerializationException | msgspec.DecodeError):
        return problem(400, f"the body is not valid JSON: {exc.detail}", exc.headers)
    return problem(exc.status_code, exc.detail, exc.headers)


def _missing_body(exc: ValidationException) -> bool:
    """Litestar reports an absent request body as the `data` kwarg failing validation."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    return any(
        isinstance(item, dict) and item.get("key") == "data" and item.get("message") == "'data'"
        for item in extra
    )


def _validation_detail(exc: ValidationException) -> str:
    if not isinstance(exc.extra, list) or not exc.extra:
        return exc.detail
    parts = []
    for item in exc.extra:
        if isinstance(item, dict):
            key = item.get("key", "")
            where = f"{key}: " if key and key != "data" else ""
            parts.append(f"{where}{item.get('message', '')}")
    return "; ".join(parts) or exc.detail


_MISSING = re.compile(r"^Missing required \w+ parameter '(?P<name>[^']+)'")


def _parameter_errors(exc: ValidationException) -> list[FieldError] | None:
    missing = _MISSING.match(exc.detail)
    if missing is not None:  # Litestar says so in its detail alone
        return [FieldError(exc.detail, parameter=missing["name"])]
    extra = exc.extra if isinstance(exc.extra, list) else []
    found = [
        FieldError(str(item.get("message", "")), parameter=str(item["key"]))
        for item in extra
        if isinstance(item, dict) and item.get("key") and item.get("source") != "body"
    ]
    return found or None


def _unavailable(exc: Exception) -> ProblemDetailsException:
    dependency = "Postgres"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        dependency = "Redis"
    elif isinstance(exc, RPCError | TemporalUnavailable):
        dependency = "Temporal"
    log.warning("%s unavailable: %r", dependency, exc)
    return problem(503, f"{dependency} is unavailable; try again shortly", {"Retry-After": "1"})


def _internal(exc: Exception) -> ProblemDetailsException:
    log.error("unhandled error", exc_info=exc)
    return problem(500, "internal error; it was logged")


UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown: a restart
    RedisConnectionError,
    RedisTimeoutError,
    RPCError,
    TemporalUnavailable,
)


def _from_sqlalchemy(exc: sqlalchemy.exc.DBAPIError) -> ProblemDetailsException:
    """SQLAlchemy wraps the driver's error: an outage underneath is a 503, anything else a 500."""
    if exc.connection_invalidated or isinstance(
        exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
    ):
        return _unavailable(exc)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UNAVAILABLE):
            return _unavailable(exc)
        cause = cause.__cause__
    return _internal(exc)


def problem_details_plugin(
    mapped: Mapping[type[Exception], Callable[[Any], ProblemDetailsException]],
) -> ProblemDetailsPlugin:
    """The plugin, turning HTTP errors, outages and the given domain errors into problems."""
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        Exception: _internal,
        HTTPException: _from_http,
        **{exc: _unavailable for exc in UNAVAILABLE},
        sqlalchemy.exc.DBAPIError: _from_sqlalchemy,
        MalformedBody: lambda e: problem(400, str(e)),
        InvalidBody: lambda e: problem(422, str(e), errors=[field_error(str(e))]),
        **mapped,
    }
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))
