"""`core.bodies`: the depth check agrees with the real nesting of any JSON, and `decode` answers every
body with a value, MalformedBody or InvalidBody, never anything else."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.bodies import MAX_JSON_DEPTH, InvalidBody, MalformedBody, check_depth, decode

PROPERTIES = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text full of what the check must see past: brackets, quotes and backslashes inside strings.
TRICKY = st.text(alphabet='[]{}"\\\n\tau\u00e9\U0001f600', max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TRICKY, children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nest(value: Any, levels: int, data: st.DataObject) -> Any:
    for _ in range(levels):
        value = [value] if data.draw(st.booleans()) else {data.draw(TRICKY): value}
    return value


@PROPERTIES
@given(JSON, st.integers(0, 40), st.booleans(), st.integers(1, 40), st.data())
def test_the_depth_check_agrees_with_the_nesting(
    inner: Any, levels: int, ascii_only: bool, limit: int, data: st.DataObject
) -> None:
    value = nest(inner, levels, data)
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    try:
        check_depth(body, limit)
        refused = False
    except MalformedBody as error:
        assert str(limit) in str(error)
        refused = True
    assert refused == (depth(value) > limit), (depth(value), limit, body[:200])


class Shape(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    name: str
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    flag: bool = False


@PROPERTIES
@given(st.binary(max_size=80) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_decode_or_are_refused_as_malformed_or_invalid(body: bytes) -> None:
    try:
        decoded = decode(body, Shape)
    except (MalformedBody, InvalidBody) as refusal:
        assert str(refusal).strip()
        return
    assert isinstance(decoded, Shape)


@pytest.mark.parametrize(
    ("body", "refusal", "says"),
    [
        (b"", MalformedBody, "empty"),
        (b" \n", MalformedBody, "empty"),
        (b"{", MalformedBody, "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, MalformedBody, str(MAX_JSON_DEPTH)),
        (b"[" * 5000, MalformedBody, str(MAX_JSON_DEPTH)),
        (b'{"Name": ' + b"[" * 5000 + b"]" * 5000 + b"}", MalformedBody, str(MAX_JSON_DEPTH)),
        (b'{"Name": "\xff"}', MalformedBody, "UTF-8"),
        (b'{"\xc3(": 1}', MalformedBody, "UTF-8"),
        (b'{"Count": "x", "Name": "\xff"}', MalformedBody, "UTF-8"),  # a wrong shape, then bad UTF-8
        (b'{"Count": "x", "Name": ', MalformedBody, "not valid JSON"),  # a wrong shape, then cut off
        (b'{"Name": "a", "Count": "10"}', InvalidBody, "Count"),
        (b'{"Name": "a", "Count": 10.0}', InvalidBody, "Count"),
        (b'{"Name": "a", "Flag": "true"}', InvalidBody, "Flag"),
        (b'{"Name": "a", "Flag": 1}', InvalidBody, "Flag"),
        (b'{"Name": "a", "Other": 1}', InvalidBody, "Other"),
        (b'{"Name": ' + b"[" * 31 + b"]" * 31 + b"}", InvalidBody, "Name"),  # 32 deep: JSON
        (b"[]", InvalidBody, "object"),
    ],
)
def test_refusals(body: bytes, refusal: type[Exception], says: str) -> None:
    with pytest.raises(refusal) as raised:
        decode(body, Shape)
    assert says in str(raised.value)


def test_the_check_is_linear_on_a_mebibyte() -> None:
    """The worst bodies of 1 MiB for each step take a few passes in C, not a loop per byte (a
    generous bound: the machine is shared)."""
    mebibyte = 1024 * 1024
    bodies = [
        b"[" * mebibyte,
        b"[]" * (mebibyte // 2),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) * (mebibyte // (2 * MAX_JSON_DEPTH)),
        b'["' + b'\\"[' * (mebibyte // 3) + b'"]',
        b"[" + b'"[",' * (mebibyte // 4) + b"1]",
    ]
    for body in bodies:
        started = time.perf_counter()
        with contextlib.suppress(MalformedBody):
            check_depth(body)
        assert time.perf_counter() - started < 1.0, body[:40]
