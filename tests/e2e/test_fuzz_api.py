"""Fuzzing the HTTP API with schemathesis: no 5xx, ever, and every response fits its documented schema.

Two documents drive the generators:

* the one the API serves (`GET /schema/openapi.json`): every operation in it,
  with valid data (positive) and with data that breaks it (negative);
* the contract of DESIGN.md, which that document leaves partly unsaid: each
  command's body and each query's parameters (from their msgspec wire types),
  and `application/problem+json` with a non-empty `detail` for every error.
  Ids come from a small pool, so generated commands meet each other's streams
  (already exists, cancel a placed order, a customer's limit, stale revisions);
  valid cases also get one text value swapped for hostile text (NUL, controls,
  bidi, SQL, very long).

The checks: no 5xx (except the contract's 503 + Retry-After for a
`ConsistentWith` the read model has not reached in time), the documented
content type and body schema for every documented status, and, after all the
fuzzing, every projection catches up: an accepted command must never stall a
read model.

Whatever the fuzzing gets stored stays stored (events are immutable), so it
runs on a stack of its own: its own database, Temporal dev server, worker and
API, and nothing it writes can disturb the rest of the suite. The API runs on
this session's event loop, so every blocking schemathesis call runs in a
thread while the loop keeps serving. Hypothesis is derandomized, without an
example database and without shrinking, with a fixed number of examples: the
same cases every run. The tests of the contract share one account and build
on each other in file order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from commands.registry import COMMANDS
from commands.service import CommandResult
from queries.http import Items
from queries.views import QUERIES
from tests.conftest import OPERATOR_TOKEN, Tenant, onboard, private_stack

pytestmark = pytest.mark.timeout(180)

EXAMPLES = 25
"""Per operation and generation mode (positive, negative), for the served document."""
CONTRACT_EXAMPLES = 40
"""Per operation and generation mode, for the contract."""
INTERLEAVED_EXAMPLES = 250
"""Commands of every kind, mixed on one account."""
ACCOUNT_EXAMPLES = 8
"""Each accepted POST /accounts (or import) onboards accounts through a workflow: fewer examples."""
REQUEST_TIMEOUT = 20
CATCH_UP_SECONDS = 20
KEY_PREFIX = 7

SSE = "GET /notifications"
"""An endless event stream: a fuzzed request would never end, so it has its own bounded test."""

COMMAND_LABELS = [f"POST /commands/{name}" for name in COMMANDS]
QUERY_LABELS = [f"GET /queries/{name}" for name in QUERIES]
SERVED = [
    "GET /accounts",
    "POST /accounts",
    "POST /accounts/import",
    "GET /accounts/imports/{import_id}",
    "GET /accounts/{account_id}",
    "POST /accounts/{account_id}/move",
    "GET /accounts/{account_id}/move",
    "POST /accounts/{account_id}/offboard",
    "GET /accounts/{account_id}/offboard",
    *COMMAND_LABELS,
    *QUERY_LABELS,
    "GET /projections",
    "POST /projections/{name}/rebuild",
    "POST /projections/{name}/abort",
    "GET /projections/parked",
    "POST /projections/{name}/parked/retry",
    "POST /projections/{name}/parked/skip",
    "GET /operations",
    "GET /customisations",
    "POST /customisations",
    "POST /notifications/tickets",
    "GET /health",
    "GET /health/live",
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

# Ids: a few fixed ones, shared by every id field, mixed with fresh ones, so that generated commands
# address each other's streams. Money: decimal strings with at most two decimals, up to the limit.
IDS = [str(uuid.UUID(int=n)) for n in range(1, 6)]
schemathesis.openapi.format("erp-id", st.one_of(*[st.sampled_from(IDS)] * 2, st.uuids().map(str)))
schemathesis.openapi.format(
    "erp-money",
    st.decimals(min_value=0, max_value=Decimal("1000000"), places=2, allow_nan=False).map(str)
    | st.sampled_from(["0", "0.00", "10.00", "5.5", "999999999999.99", "1000000000000"]),
)
schemathesis.openapi.format(
    "erp-token", st.from_regex(r"\A(Order|Customer):[0-9]{1,4}\Z") | st.text(max_size=30)
)
CONTRACT_FORMATS = {"uuid": "erp-id", "decimal": "erp-money"}

PROBLEM = {
    "type": "object",
    "required": ["status", "title", "detail"],
    "properties": {
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "title": {"type": "string", "minLength": 1},
        "detail": {"type": "string", "pattern": r"\S"},
    },
}
"""DESIGN.md: every error body is application/problem+json with a human-readable `detail`."""


# ---------------------------------------------------------------------------------------------
# a stack of its own


@pytest.fixture(scope="module")
async def fuzz_stack() -> AsyncIterator[tuple[str, str]]:
    """A database, Temporal dev server, worker and API for the fuzzing alone: (API URL, database URL)."""
    # The document names each operation's bearer scheme, so negative cases send bad or no keys (401s,
    # as documented); counting them per address would soon answer the fuzzer 429 instead.
    async with private_stack("fuzz", auth_failures=0) as stack:
        yield stack


@pytest.fixture(scope="module")
def fuzz_api(fuzz_stack: tuple[str, str]) -> str:
    return fuzz_stack[0]


@pytest.fixture(scope="module")
def fuzz_database(fuzz_stack: tuple[str, str]) -> str:
    return fuzz_stack[1]


@pytest.fixture(scope="module")
async def document(fuzz_api: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=fuzz_api, timeout=30) as client:
        response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    served: dict[str, Any] = response.json()
    return served


@pytest.fixture(scope="module")
async def served_tenant(fuzz_api: str) -> Tenant:
    """The account the served document's operations run as (it may get random custom attributes)."""
    async with httpx.AsyncClient(base_url=fuzz_api, timeout=60) as client:
        return await onboard(client, "Fuzz served")


@pytest.fixture(scope="module")
async def contract_tenant(fuzz_api: str) -> Tenant:
    """The account of the contract's tests: they build on each other's streams, in file order."""
    async with httpx.AsyncClient(base_url=fuzz_api, timeout=60) as client:
        return await onboard(client, "Fuzz contract")


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`METHOD /path` -> its operation object."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    }


def headers_for(operation: dict[str, Any], tenant: Tenant) -> dict[str, str]:
    if {"OperatorToken": []} in operation.get("security", []):
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    return dict(tenant.headers)


# ---------------------------------------------------------------------------------------------
# checks and the fuzzing loop (blocking: it runs in a thread)


def not_a_server_error_but_a_wait(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 5xx, except the contract's 503 + Retry-After for a `ConsistentWith` not reached in time."""
    if response.status_code == 503 and "ConsistentWith" in (case.query or {}):
        assert response.headers.get("retry-after"), "a 503 for ConsistentWith must carry Retry-After"
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [not_a_server_error_but_a_wait, response_schema_conformance]
"""Checked on every response; the first failure ends the test."""


def fuzz(
    strategy: st.SearchStrategy[Case], label: str, headers: dict[str, str], base_url: str, examples: int
) -> Counter[int]:
    """Send up to `examples` generated cases, checking each response; returns the statuses seen.

    Empty if the document admits every value, so that there is nothing to negate.
    """
    # Idempotency keys are drawn alike in every test (derandomized); prefixed with the test's label
    # they still repeat within a test (replays, reuse refused) but not across tests.
    prefix = hashlib.sha256(label.encode()).hexdigest()[: KEY_PREFIX - 1] + "-"
    statuses: Counter[int] = Counter()
    media_types: set[str] = set()

    def media_type_conformance(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        """Collected, not raised, so that one wrong media type does not end the search for a 5xx."""
        try:
            content_type_conformance(ctx, response, case)
        except AssertionError as failure:
            media_types.add(f"{response.status_code}: {' '.join(str(failure).split())}")
        return None

    with requests.Session() as session:

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def run(case: Case) -> None:
            key = case.headers.get("Idempotency-Key") if case.headers else None
            if isinstance(key, str):
                case.headers["Idempotency-Key"] = prefix + key
            bounded_wait(case)
            response = case.call_and_validate(
                base_url=base_url,
                session=session,
                headers=headers,
                checks=[*CHECKS, media_type_conformance],
                timeout=REQUEST_TIMEOUT,
            )
            statuses[response.status_code] += 1

        with contextlib.suppress(Unsatisfiable):
            run()
    print(f"{label}: {sorted(statuses.items())}")
    assert not media_types, f"{label}: responses in a media type the document does not give: {media_types}"
    return statuses


def bounded_wait(case: Case) -> None:
    """A `ConsistentWith` waits at most half a second (not up to 30): a token ahead costs little.

    Timeouts outside 0..30 are left alone, so that the API still has to refuse them.
    """
    if not case.query or "ConsistentWith" not in case.query:
        return
    timeout = case.query.get("Timeout")
    if timeout is None or (isinstance(timeout, int | float) and 0.5 < timeout <= 30):
        case.query["Timeout"] = 0.5


def strategy_for(
    schema: schemathesis.BaseSchema, label: str, mode: GenerationMode
) -> st.SearchStrategy[Case]:
    method, path = label.split(" ", 1)
    strategy = schema[path][method].as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        return strategy.map(plain_integers)
    return strategy


def plain_integers(case: Case) -> Case:
    """Spell whole floats in a body as integers.

    JSON Schema counts `2.0` as an integer and schemathesis sends it as one; the API reads JSON
    strictly and refuses it (422), which is fine but would stop half the valid commands at the door.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    if isinstance(case.body, dict | list):
        case.body = plain(case.body)
    return case


# ---------------------------------------------------------------------------------------------
# the served document


async def test_the_document_is_fuzzed_whole(document: dict[str, Any]) -> None:
    """Every operation the API documents is fuzzed below: a new endpoint cannot slip past."""
    assert set(operations(document)) == {*SERVED, SSE}


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("label", SERVED)
async def test_served_document(
    fuzz_api: str, document: dict[str, Any], served_tenant: Tenant, label: str, mode: GenerationMode
) -> None:
    if label not in operations(document):
        pytest.fail(f"the API does not document {label}")
    schema = schemathesis.openapi.from_dict(document)
    examples = ACCOUNT_EXAMPLES if label in ("POST /accounts", "POST /accounts/import") else EXAMPLES
    headers = headers_for(operations(document)[label], served_tenant)
    statuses = await asyncio.to_thread(
        fuzz, strategy_for(schema, label, mode), f"served {label} {mode}", headers, fuzz_api, examples
    )
    if not statuses:
        assert mode is GenerationMode.NEGATIVE
        pytest.skip("the document admits every value here: nothing to negate")


async def test_notifications_stream(fuzz_api: str, served_tenant: Tenant) -> None:
    """The SSE endpoint answers 200 with an event stream for a tenant and a problem for anyone else."""
    async with httpx.AsyncClient(base_url=fuzz_api, timeout=10) as client:
        async with client.stream("GET", "/notifications", headers=served_tenant.headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {OPERATOR_TOKEN}"}):
            refused = await client.get("/notifications", headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")


# ---------------------------------------------------------------------------------------------
# the contract


def _with_formats(node: Any) -> Any:
    """A copy of a msgspec JSON schema whose uuid and decimal strings use the pools above."""
    if isinstance(node, dict):
        out = {key: _with_formats(value) for key, value in node.items()}
        if out.get("format") in CONTRACT_FORMATS:
            out["format"] = CONTRACT_FORMATS[out["format"]]
        return out
    if isinstance(node, list):
        return [_with_formats(item) for item in node]
    return node


def contract_document() -> dict[str, Any]:
    """Each command and query as DESIGN.md describes it, with problem+json for every error."""
    types = [spec.message for spec in COMMANDS.values()] + [spec.params for spec in QUERIES.values()]
    _, components = msgspec.json.schema_components(
        [*types, CommandResult, Items], ref_template="#/components/schemas/{name}"
    )
    schemas = {name: _with_formats(component) for name, component in components.items()}

    def answer(name: str) -> dict[str, Any]:
        return {
            "description": name,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }

    problem = {"description": "A problem", "content": {"application/problem+json": {"schema": PROBLEM}}}
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200 - KEY_PREFIX},
    }
    paths: dict[str, Any] = {}
    for spec in COMMANDS.values():
        body = {"$ref": f"#/components/schemas/{spec.message.__name__}"}
        paths[f"/commands/{spec.name}"] = {
            "post": {
                "operationId": spec.name,
                "parameters": [key],
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": answer("CommandResult"), "default": problem},
            }
        }
    for query in QUERIES.values():
        params = schemas[query.params.__name__]
        parameters = [
            {"name": name, "in": "query", "required": name in params.get("required", []), "schema": schema}
            for name, schema in params["properties"].items()
        ]
        parameters += [
            {"name": "ConsistentWith", "in": "query", "schema": {"type": "string", "format": "erp-token"}},
            # Bounded, so that a token ahead of the read model costs at most half a second.
            {"name": "Timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 0.5}},
        ]
        paths[f"/queries/{query.name}"] = {
            "get": {
                "operationId": query.name,
                "parameters": parameters,
                "responses": {"200": answer("Items"), "default": problem},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ERP contract (DESIGN.md)", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("label", COMMAND_LABELS + QUERY_LABELS)
async def test_contract(fuzz_api: str, contract_tenant: Tenant, label: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(contract_document())
    statuses = await asyncio.to_thread(
        fuzz,
        strategy_for(schema, label, mode),
        f"contract {label} {mode}",
        contract_tenant.headers,
        fuzz_api,
        CONTRACT_EXAMPLES,
    )
    assert statuses


HOSTILE_TEXT = [
    "\x00",
    "before\x00after",
    "\x00\x00\x00",
    "\u202eright-to-left",
    "\t\r\n",
    "  padded  ",
    "' OR 1=1 --",
    "\U0001f600\u0301",
    "\ufeff",
    "x" * 5000,
]
"""Text that breaks naive handling: NUL (Postgres text refuses it), controls, bidi, SQL, length."""
HOSTILE_EXAMPLES = 20


def with_hostile_text(case: Case, leaf: int, text: str) -> Case:
    """`case` with one of its string values (body or query) replaced by `text`."""
    places: list[tuple[Any, Any]] = []

    def collect(container: Any) -> None:
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, str):
                places.append((container, key))
            elif isinstance(value, dict | list):
                collect(value)

    for container in (case.body, case.query):
        if isinstance(container, dict | list):
            collect(container)
    if places:
        container, key = places[leaf % len(places)]
        container[key] = text
    return case


@pytest.mark.parametrize("label", COMMAND_LABELS + QUERY_LABELS)
async def test_contract_hostile_text(fuzz_api: str, contract_tenant: Tenant, label: str) -> None:
    """Valid commands and queries with one text value made hostile: refused or served, never a 5xx."""
    schema = schemathesis.openapi.from_dict(contract_document())
    hostile = strategy_for(schema, label, GenerationMode.POSITIVE).flatmap(
        lambda case: st.builds(
            with_hostile_text, st.just(case), st.integers(0, 64), st.sampled_from(HOSTILE_TEXT)
        )
    )
    statuses = await asyncio.to_thread(
        fuzz, hostile, f"hostile {label}", contract_tenant.headers, fuzz_api, HOSTILE_EXAMPLES
    )
    assert statuses


async def test_contract_commands_interleaved(fuzz_api: str, contract_tenant: Tenant) -> None:
    """Valid commands of every kind, mixed, on shared ids: chains like register, make customer, order.

    Without NUL characters: the tests above send those, and here they would only stop the run
    before it gets deep into the model.
    """
    schema = schemathesis.openapi.from_dict(contract_document())
    schema.config.generation.update(allow_x00=False)
    mixed = st.one_of([strategy_for(schema, label, GenerationMode.POSITIVE) for label in COMMAND_LABELS])
    statuses = await asyncio.to_thread(
        fuzz, mixed, "interleaved commands", contract_tenant.headers, fuzz_api, INTERLEAVED_EXAMPLES
    )
    assert statuses[200] > 0, statuses


async def test_every_projection_caught_up_with_what_the_fuzzing_stored(
    fuzz_api: str, fuzz_database: str
) -> None:
    """Last in the file: every command the API accepted above must be projectable.

    An accepted event that a projector cannot apply stalls that projection for
    every account in the database, since a failed batch rolls back whole.
    """
    behind: list[dict[str, Any]] = []
    deadline = time.monotonic() + CATCH_UP_SECONDS
    async with httpx.AsyncClient(base_url=fuzz_api, timeout=30) as client:
        while time.monotonic() < deadline:
            response = await client.get("/projections", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
            assert response.status_code == 200, response.text
            behind = [view for view in response.json() if view["EventsBehind"] != 0]
            if not behind:
                return
            await asyncio.sleep(0.5)
    stuck = await first_unprojected_events(fuzz_database, behind)
    raise AssertionError(
        f"projections still behind after {CATCH_UP_SECONDS} s: {behind}\n"
        "the first events they have not applied:\n" + "\n".join(stuck)
    )


_UNPROJECTED = """
SELECT e.stream_id, e.sequence_number, e.payload_item_name, left(e.payload::text, 300) AS payload
FROM projection_checkpoints c
JOIN events e
  ON e.account_id = c.account_id AND e.stream_type = c.stream_type AND e.sequence_number > c.position
WHERE c.projection = $1
ORDER BY e.account_id, e.stream_type, e.sequence_number
LIMIT 3
"""


async def first_unprojected_events(database_url: str, behind: list[dict[str, Any]]) -> list[str]:
    """What the lagging projections are stuck on, for the failure message."""
    connection = await asyncpg.connect(database_url)
    try:
        return [
            f"  {view['Name']}: {dict(row)}"
            for view in behind
            for row in await connection.fetch(_UNPROJECTED, view["Name"])
        ]
    finally:
        await connection.close()
