"""Failed authentications per client address (tenancy.auth_failures), on a clock of the test's own."""

from __future__ import annotations

import pytest

from tenancy.auth_failures import AuthFailures


def test_an_address_may_fail_up_to_its_limit_then_waits() -> None:
    failures = AuthFailures(limit=5, window=60.0)
    now = 6000.0  # the start of a window
    for _ in range(5):
        assert failures.retry_after("10.0.0.1", now) is None
        failures.failed("10.0.0.1", now)
    wait = failures.retry_after("10.0.0.1", now)
    assert wait is not None and 1 <= wait <= 120
    assert failures.retry_after("10.0.0.2", now) is None, "another address is not affected"


def test_the_wait_it_names_is_enough_and_not_much_more() -> None:
    failures = AuthFailures(limit=10, window=60.0)
    now = 6030.0
    for _ in range(10):
        failures.failed("a", now)
    wait = failures.retry_after("a", now)
    assert wait is not None
    assert failures.retry_after("a", now + wait) is None
    assert failures.retry_after("a", now + wait - 2) is not None


def test_failures_slide_out_of_the_window() -> None:
    failures = AuthFailures(limit=4, window=60.0)
    for _ in range(4):
        failures.failed("a", 6000.0)
    assert failures.retry_after("a", 6059.0) is not None
    # Half of the previous window's four still count half-way through the next: two, under four.
    assert failures.retry_after("a", 6090.0) is None
    assert failures.retry_after("a", 6200.0) is None


def test_memory_is_bounded_by_addresses_forgetting_the_oldest() -> None:
    failures = AuthFailures(limit=1, window=60.0, max_addresses=100)
    failures.failed("first", 6000.0)
    for n in range(1000):
        failures.failed(f"10.0.{n // 256}.{n % 256}", 6000.0)
    assert len(failures) == 100
    assert failures.retry_after("first", 6000.0) is None, "forgotten, the oldest"
    assert failures.retry_after("10.0.3.231", 6000.0) is not None, "the newest is kept"


def test_a_limit_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ValueError, match="ERP_AUTH_FAILURES"):
        AuthFailures(limit=0)
