"""Every error as `application/problem+json` (RFC 9457) with a human-readable `detail`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
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


class ProblemDetails(msgspec.Struct):
    """The body of every error (RFC 9457), as documented in OpenAPI."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors an operation can answer, all problem+json."""
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=HTTPStatus(code).phrase,
            media_type="application/problem+json",
        )
        for code in codes
    }


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemDetailsException:
    """A problem+json error with the standard title for `status`; `extra` adds members to the body."""
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        type_="about:blank",
        headers=headers,
        extra=extra,
    )


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ValidationException):
        if _missing_body(exc):
            return problem(400, EMPTY_BODY, exc.headers)
        # Well-formed input with a wrong, missing or unknown field: 422, naming the field.
        return problem(422, _validation_detail(exc), exc.headers)
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
        InvalidBody: lambda e: problem(422, str(e)),
        **mapped,
    }
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))
