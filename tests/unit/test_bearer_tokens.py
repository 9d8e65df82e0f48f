"""A bearer token longer than any key is refused as it is read, before it is decoded or hashed."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.connection import ASGIConnection
from litestar.plugins.problem_details import ProblemDetailsException

from tenancy.auth import bearer_token
from tenancy.catalog import API_KEY_LENGTH, new_api_key


def connection(authorization: bytes | None) -> ASGIConnection[Any, Any, Any, Any]:
    headers = [] if authorization is None else [(b"authorization", authorization)]
    return ASGIConnection(scope={"type": "http", "headers": headers})  # type: ignore[arg-type]


def test_every_key_has_the_length_a_key_can_have() -> None:
    assert {len(new_api_key()) for _ in range(100)} == {API_KEY_LENGTH}


def test_a_key_is_read_whatever_the_blanks_and_the_schemes_case() -> None:
    key = new_api_key()
    assert bearer_token(connection(f"Bearer {key}".encode())) == key
    assert bearer_token(connection(f"bearer   {key}  ".encode())) == key


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer " + b"k" * (API_KEY_LENGTH + 1),
        b"Bearer " + b"k" * (4 * 1024 * 1024),
        b"Bearer " + b" " * 40 + b"k" * API_KEY_LENGTH,  # the header alone is too long
    ],
)
def test_a_longer_token_is_refused_401_naming_the_length(header: bytes) -> None:
    with pytest.raises(ProblemDetailsException) as refused:
        bearer_token(connection(header))
    assert refused.value.status_code == 401
    assert str(API_KEY_LENGTH) in (refused.value.detail or "")


def test_the_operator_guard_allows_its_own_tokens_length() -> None:
    operator = "o" * 200
    assert bearer_token(connection(f"Bearer {operator}".encode()), len(operator), "no") == operator
    with pytest.raises(ProblemDetailsException) as refused:
        bearer_token(connection(f"Bearer {operator}o".encode()), len(operator), "no")
    assert refused.value.detail == "no"
