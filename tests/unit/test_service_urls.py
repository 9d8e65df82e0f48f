"""What `erp` says about a service URL: where it connects, and the URL with its password hidden."""

from __future__ import annotations

import pytest

from erp.embedded import address_of, shown


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("postgresql://erp:s3cret@db.example:6432/erp", "postgresql://erp:***@db.example:6432/erp"),
        ("redis://:pw@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"),
        ("postgresql://postgres@127.0.0.1:5432/erp", "postgresql://postgres@127.0.0.1:5432/erp"),
        (
            "postgresql://u:p%40ss@[::1]:5432/erp?sslmode=require",
            "postgresql://u:***@[::1]:5432/erp?sslmode=require",
        ),
    ],
)
def test_a_password_is_never_shown(url: str, hidden: str) -> None:
    assert shown(url) == hidden


@pytest.mark.parametrize(
    ("url", "default", "address"),
    [
        ("postgresql://postgres@127.0.0.1/erp", 5432, "127.0.0.1:5432"),
        ("postgresql://u:p@db:6432/erp", 5432, "db:6432"),
        ("redis://localhost/0", 6379, "localhost:6379"),
        ("postgresql://u@[::1]:5433/erp", 5432, "[::1]:5433"),
        ("postgresql:///erp?host=/var/run/postgresql", 5432, None),  # a Unix socket: not checked
    ],
)
def test_the_address_a_url_connects_to(url: str, default: int, address: str | None) -> None:
    assert address_of(url, default) == address
