"""Every error as `application/problem+json` (RFC 9457) with a human-readable `detail`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from temporalio.service import RPCError

log = logging.getLogger(__name__)


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> ProblemDetailsException:
    """A problem+json error with the standard title for `status`."""
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        type_="about:blank",
        headers=headers,
    )


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    detail = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{detail}: {exc.extra}"
    return problem(exc.status_code, detail, exc.headers)


def _unavailable(exc: Exception) -> ProblemDetailsException:
    dependency = "Postgres"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        dependency = "Redis"
    elif isinstance(exc, RPCError):
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
    RedisConnectionError,
    RedisTimeoutError,
    RPCError,
)


def problem_details_plugin(
    mapped: Mapping[type[Exception], Callable[[Any], ProblemDetailsException]],
) -> ProblemDetailsPlugin:
    """The plugin, turning HTTP errors, outages and the given domain errors into problems."""
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        Exception: _internal,
        HTTPException: _from_http,
        **{exc: _unavailable for exc in UNAVAILABLE},
        **mapped,
    }
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))
