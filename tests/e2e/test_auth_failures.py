"""Secure defaults over HTTP: failed authentications are limited per client address (429 with
Retry-After before any lookup), and the API refuses to listen beyond loopback with a guessable
operator token."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.settings import DEV_OPERATOR_TOKEN, Settings
from erp.app import create_app
from tests.conftest import OPERATOR_TOKEN, onboard, own_api
from tests.e2e.test_http_contract import assert_problem

LIMIT = 5


@pytest.fixture
async def guarded(settings: Settings, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own, started for each test (no failures counted yet), that lets an address
    fail LIMIT times a minute."""
    async with own_api(settings, auth_failures=LIMIT) as client:
        yield client


async def test_an_address_that_keeps_failing_is_told_to_wait(guarded: httpx.AsyncClient) -> None:
    tenant = await onboard(guarded, "Known")
    assert (await guarded.get("/customisations", headers=tenant.headers)).status_code == 200

    answers = [
        (await guarded.get("/customisations", headers={"Authorization": f"Bearer guess-{n}"})).status_code
        for n in range(LIMIT)
    ]
    assert answers == [401] * LIMIT
    refused = await guarded.get("/customisations", headers={"Authorization": "Bearer one-more-guess"})
    assert_problem(refused, 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert "failed authentications" in refused.json()["detail"]

    # No header at all, and the operator's endpoints: refused the same way.
    assert_problem(await guarded.get("/customisations"), 429)
    assert_problem(
        await guarded.get("/projections", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}), 429
    )
    # A key this process already knows still works from the same address.
    assert (await guarded.get("/customisations", headers=tenant.headers)).status_code == 200


async def test_wrong_operator_tokens_count_as_failures(guarded: httpx.AsyncClient) -> None:
    for n in range(LIMIT):
        response = await guarded.get("/projections", headers={"Authorization": f"Bearer wrong-{n}"})
        assert response.status_code in (401, 429)  # the other test's failures may still count
    assert_problem(await guarded.get("/projections", headers={"Authorization": "Bearer wrong"}), 429)


def test_settings_refuse_the_development_token_beyond_loopback() -> None:
    for host in ("0.0.0.0", "::", "10.1.2.3", "erp.example.com"):
        with pytest.raises(ValueError, match="ERP_OPERATOR_TOKEN"):
            Settings(http_host=host, operator_token=DEV_OPERATOR_TOKEN).check_exposure()
        with pytest.raises(ValueError, match="at least 16"):
            Settings(http_host=host, operator_token="short").check_exposure()
        Settings(http_host=host, operator_token="a-secret-of-our-own-32-characters").check_exposure()
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        Settings(http_host=host, operator_token=DEV_OPERATOR_TOKEN).check_exposure()
    with pytest.raises(ValueError, match="development token"):
        create_app(Settings(http_host="0.0.0.0", operator_token=DEV_OPERATOR_TOKEN))


def test_erp_api_will_not_listen_beyond_loopback_with_the_development_token() -> None:
    """`erp api` stops before it listens, with a message saying what to set; exit status 2."""
    erp = Path(sys.executable).parent / "erp"
    env = {"ERP_HTTP_HOST": "0.0.0.0", "ERP_OPERATOR_TOKEN": DEV_OPERATOR_TOKEN, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(erp), "api"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "ERP_OPERATOR_TOKEN" in done.stderr and "Traceback" not in done.stderr


async def test_many_new_keys_at_once_from_one_address_are_never_refused(
    guarded: httpx.AsyncClient,
) -> None:
    """A proxy's tenants share its address: thirty accounts' first requests at once (their keys
    not yet known to this process) are each looked up and served, not counted as guesses."""
    tenants = [await onboard(guarded, f"Behind a proxy {n}") for n in range(30)]
    answers = await asyncio.gather(*(guarded.get("/customisations", headers=t.headers) for t in tenants))
    assert [a.status_code for a in answers] == [200] * len(tenants)


async def test_a_key_that_worked_is_vouched_for_after_the_cache_forgets_it(
    guarded: httpx.AsyncClient,
) -> None:
    tenant = await onboard(guarded, "Vouched")
    assert (await guarded.get("/customisations", headers=tenant.headers)).status_code == 200
    for n in range(LIMIT):
        await guarded.get("/customisations", headers={"Authorization": f"Bearer guess-{n}"})
    await asyncio.sleep(1.5)  # past the suite's ERP_CACHE_TTL of 1 s: the route is looked up again
    assert (await guarded.get("/customisations", headers=tenant.headers)).status_code == 200
    assert_problem(await guarded.get("/customisations", headers={"Authorization": "Bearer x"}), 429)


async def test_a_strangers_body_is_not_read(guarded: httpx.AsyncClient) -> None:
    """POST /customisations decodes a typed body before its dependencies run; a guard checks the key
    first, so a stranger's body (deep, not JSON) is answered 401, not 400."""
    deep = b"[" * 5000 + b"]" * 5000
    for body in (deep, b"not json"):
        response = await guarded.post(
            "/customisations", content=body, headers={"Authorization": "Bearer stranger"}
        )
        assert_problem(response, 401)
