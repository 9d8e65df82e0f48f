"""Settings read from the environment: ERP_REDIS_CLUSTER turns cluster mode on."""

from __future__ import annotations

import pytest

from core.settings import Settings


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", "True", "Yes", "YES"])
def test_redis_cluster_is_on_for_1_true_and_yes_in_any_case(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ERP_REDIS_CLUSTER", value)
    assert Settings().redis_cluster is True


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "2", "y", "on", "enabled"])
def test_redis_cluster_is_off_for_anything_else(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ERP_REDIS_CLUSTER", value)
    assert Settings().redis_cluster is False


def test_redis_cluster_is_off_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERP_REDIS_CLUSTER", raising=False)
    assert Settings().redis_cluster is False
