"""Each account's bytes of bodies and pages per second (tenancy.byte_budget), on a clock of the
test's own."""

from __future__ import annotations

import uuid

import pytest

from tenancy.byte_budget import ByteBudget


def test_an_account_may_move_its_burst_then_waits_until_its_debt_is_paid() -> None:
    budget = ByteBudget(rate=1000, burst=4000)
    account, other = uuid.uuid4(), uuid.uuid4()
    assert budget.retry_after(account, 0.0) is None
    budget.charge(account, 3000, 0.0)
    assert budget.retry_after(account, 0.0) is None, "1000 bytes left"
    budget.charge(account, 3500, 0.0)  # a page bigger than what was left: 2500 in debt
    assert budget.retry_after(account, 0.0) == 3
    assert budget.retry_after(account, 2.4) == 1
    assert budget.retry_after(account, 2.6) is None, "paid off, and something left"
    assert budget.retry_after(other, 0.0) is None, "accounts are apart"


def test_it_refills_at_its_rate_up_to_its_burst() -> None:
    budget = ByteBudget(rate=1000, burst=4000)
    account = uuid.uuid4()
    budget.charge(account, 4000, 0.0)
    assert budget.retry_after(account, 0.0) == 1
    budget.charge(account, 3999, 100.0)  # long idle: the whole burst back, not more
    assert budget.retry_after(account, 100.0) is None
    budget.charge(account, 2, 100.0)
    assert budget.retry_after(account, 100.0) == 1


def test_memory_is_bounded_and_refilled_accounts_are_forgotten() -> None:
    budget = ByteBudget(rate=1000, burst=4000, max_accounts=100)
    first = uuid.uuid4()
    budget.charge(first, 10_000, 0.0)
    for _ in range(1000):
        budget.charge(uuid.uuid4(), 10, 0.0)
    assert len(budget) == 100
    assert budget.retry_after(first, 0.0) is None, "the oldest was forgotten"
    many = ByteBudget(rate=1000, burst=4000)
    for _ in range(1023):
        many.charge(uuid.uuid4(), 10, 0.0)
    assert len(many) == 1023
    many.charge(uuid.uuid4(), 10, 60.0)  # the 1,024th, a minute later: a sweep, all others refilled
    assert len(many) == 1


def test_a_budget_that_makes_no_sense_is_refused() -> None:
    with pytest.raises(ValueError, match="ERP_ACCOUNT_BYTES"):
        ByteBudget(rate=0)
