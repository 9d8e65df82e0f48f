"""The stream cache is bounded in bytes: in all, per account (an account evicts its own streams
first), and per history (one too big is not cached)."""

from __future__ import annotations

from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.stream_cache import (
    EVENT_OVERHEAD,
    JSON_FACTOR,
    STREAM_OVERHEAD,
    CachedEvent,
    StreamCache,
    event_bytes,
)

A, B, C = (UUID(int=n) for n in (1, 2, 3))


def history(events: int, payload_chars: int = 100) -> tuple[CachedEvent, ...]:
    payload = {"Text": "x" * payload_chars}
    return tuple(CachedEvent(n, "Happened", payload, event_bytes(payload)) for n in range(1, events + 1))


def weight(events: int, payload_chars: int = 100) -> int:
    return STREAM_OVERHEAD + events * (EVENT_OVERHEAD + JSON_FACTOR * (payload_chars + len('{"Text":""}')))


def test_an_event_weighs_its_payloads_json_times_the_factor() -> None:
    assert event_bytes({"Text": "x" * 100}) == EVENT_OVERHEAD + JSON_FACTOR * 111


def test_the_whole_cache_stays_within_its_bytes_the_least_recently_used_going_first() -> None:
    cache = StreamCache(max_bytes=10 * weight(1), account_share=1.0)
    for n in range(12):
        cache.put(A, f"s{n}", history(1))
    assert cache.bytes == 10 * weight(1) and len(cache) == 10
    assert cache.get(A, "s0") is None and cache.get(A, "s1") is None
    assert cache.get(A, "s2") is not None  # now the most recently used
    cache.put(B, "t", history(1))
    assert cache.get(A, "s3") is None and cache.get(A, "s2") is not None


def test_an_account_evicts_its_own_streams_beyond_its_share() -> None:
    cache = StreamCache(max_bytes=8 * weight(1), account_share=0.25)  # two streams an account
    cache.put(B, "b0", history(1))
    cache.put(C, "c0", history(1))
    for n in range(6):
        cache.put(A, f"a{n}", history(1))
    assert cache.account_bytes(A) == 2 * weight(1)
    assert [cache.get(A, f"a{n}") is not None for n in range(6)] == [False] * 4 + [True] * 2
    assert cache.get(B, "b0") is not None and cache.get(C, "c0") is not None


def test_a_history_too_big_for_half_an_accounts_share_is_not_cached_and_its_old_one_goes() -> None:
    cache = StreamCache(max_bytes=100 * weight(1), account_share=0.1)  # a history: 5 weight(1) at most
    cache.put(A, "big", history(5))
    assert cache.get(A, "big") is not None
    cache.put(A, "big", history(10))
    assert cache.get(A, "big") is None and cache.bytes == 0 and cache.account_bytes(A) == 0


def test_no_bytes_caches_nothing() -> None:
    cache = StreamCache(max_bytes=0)
    cache.put(A, "s", history(1))
    assert cache.get(A, "s") is None and len(cache) == 0


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([A, B, C]), st.integers(0, 9), st.integers(1, 6), st.booleans()),
        max_size=80,
    ),
    st.integers(0, 40),
    st.sampled_from([0.2, 0.5, 1.0]),
)
def test_bounds_hold_and_what_is_cached_is_what_was_put(
    steps: list[tuple[UUID, int, int, bool]], units: int, share: float
) -> None:
    """Any sequence of puts and gets: the bytes held are the sum of the cached histories' weights,
    within the whole bound and each account's; a cached history is the last one put for its key."""
    cache = StreamCache(max_bytes=units * weight(1), account_share=share)
    last: dict[tuple[UUID, str], tuple[CachedEvent, ...]] = {}
    for account, stream, events, read in steps:
        key = (account, f"s{stream}")
        if read:
            found = cache.get(*key)
            assert found is None or found == last[key]
        else:
            last[key] = history(events)
            cache.put(*key, last[key])
        held = {k: cache.get(*k) for k in last}
        cached = {k: v for k, v in held.items() if v is not None}
        assert all(v == last[k] for k, v in cached.items())
        assert cache.bytes == sum(weight(len(v)) for v in cached.values()) <= cache.max_bytes
        for who in (A, B, C):
            mine = sum(weight(len(v)) for k, v in cached.items() if k[0] == who)
            assert cache.account_bytes(who) == mine <= cache.max_account_bytes
