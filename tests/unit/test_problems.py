"""Outages are 503 however they arrive, even wrapped by SQLAlchemy; anything else unexpected is 500."""

from __future__ import annotations

import asyncpg
import sqlalchemy.exc

from core.problems import _from_sqlalchemy


def wrapped(cause: Exception) -> sqlalchemy.exc.DBAPIError:
    """What SQLAlchemy raises when asyncpg fails underneath: the driver's error as the cause."""
    try:
        try:
            raise cause
        except Exception as error:
            raise sqlalchemy.exc.DBAPIError("SELECT 1", None, error) from error
    except sqlalchemy.exc.DBAPIError as error:
        return error


def test_a_database_starting_up_behind_sqlalchemy_is_503() -> None:
    problem = _from_sqlalchemy(wrapped(asyncpg.CannotConnectNowError("the database system is starting up")))
    assert problem.status_code == 503
    assert problem.headers == {"Retry-After": "1"}


def test_a_refused_connection_behind_sqlalchemy_is_503() -> None:
    assert _from_sqlalchemy(wrapped(ConnectionRefusedError(111, "refused"))).status_code == 503


def test_a_bug_behind_sqlalchemy_is_500() -> None:
    assert _from_sqlalchemy(wrapped(asyncpg.UndefinedColumnError("no such column"))).status_code == 500
