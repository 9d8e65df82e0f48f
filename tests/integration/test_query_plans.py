"""The list queries find their rows through the index on what they filter by.

Row-level security already confines a query to its account, but an account's read models
grow without end: a query that reads every row of its account to filter them gets slower with
every order (the soak showed GetOrders doing that). With an account holding thousands of rows
in each read model, each plan, generic as asyncpg's prepared statements use them, must look up
the filter's index. The plans are read under a tenant's row-level-security session, as the
API runs them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import pytest

from queries.views import _DELIVERIES, _GET_CUSTOMERS, _GET_ORDERS, _OPEN_INVOICES
from tenancy.rls import tenant_transaction
from tests.conftest import make_account

SOME_ID = UUID(int=1)
ROWS = 5000

FILL = [
    # Orders under three names (thousands each, as for a big customer); a tenth of them for one
    # of 50 customers, whose parties have names (copied onto the customers and their orders).
    """INSERT INTO rm_order (account_id, id, created_at, updated_at, order_id, customer_name, customer_id,
                             party_name)
       SELECT $1, gen_random_uuid(), now(), now(), gen_random_uuid(), 'Name ' || (g % 3),
              CASE WHEN g % 10 = 0 THEN ('00000000-0000-0000-0000-' || lpad((g % 50)::text, 12, '0'))::uuid
              END,
              CASE WHEN g % 10 = 0 THEN 'Name ' || (g % 50) END
       FROM generate_series(1, $2) g""",
    """INSERT INTO rm_person (account_id, id, created_at, updated_at, name)
       SELECT $1, gen_random_uuid(), now(), now(), 'Name ' || (g % 1000) FROM generate_series(1, $2) g""",
    """INSERT INTO rm_organisation (account_id, id, created_at, updated_at, name)
       SELECT $1, gen_random_uuid(), now(), now(), 'Name ' || (g % 1000) FROM generate_series(1, $2) g""",
    """INSERT INTO rm_customer (account_id, id, created_at, updated_at, party_id, workarea_id, party_name)
       SELECT $1, ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, now(), now(),
              gen_random_uuid(), ('00000000-0000-0000-0001-' || lpad((g % 100)::text, 12, '0'))::uuid,
              'Name ' || (g % 1000)
       FROM generate_series(1, $2) g""",
    """INSERT INTO rm_invoice (account_id, id, created_at, updated_at, order_id, customer_id, status)
       SELECT $1, gen_random_uuid(), now(), now(), gen_random_uuid(),
              ('00000000-0000-0000-0000-' || lpad((g % 500)::text, 12, '0'))::uuid,
              CASE WHEN g % 5 = 0 THEN 'Open' ELSE 'Paid' END
       FROM generate_series(1, $2) g""",
    """INSERT INTO rm_delivery (account_id, id, created_at, updated_at, order_id, workarea_id)
       SELECT $1, gen_random_uuid(), now(), now(), gen_random_uuid(),
              ('00000000-0000-0000-0001-' || lpad((g % 100)::text, 12, '0'))::uuid
       FROM generate_series(1, $2) g""",
]


@pytest.mark.parametrize(
    ("sql", "args", "indexes"),
    [
        pytest.param(
            _GET_ORDERS,
            ("Name 1", None, None, 101),
            [
                "rm_order_customer_name_seek_idx",
                "rm_order_customer_id_seek_idx",
                "rm_customer_party_name_lookup_idx",  # the customers of that name, by their copied name
            ],
            id="GetOrders by CustomerName",
        ),
        pytest.param(
            _GET_CUSTOMERS[True],
            (SOME_ID, None, None, 101),
            ["rm_customer_workarea_id_seek_idx"],
            id="GetCustomers in a Workarea",
        ),
        pytest.param(
            _GET_CUSTOMERS[False],
            (None, None, None, 101),
            ["rm_customer_party_name_seek_idx"],
            id="GetCustomers of every Workarea",
        ),
        pytest.param(
            _OPEN_INVOICES[True],
            (SOME_ID, None, None, 101),
            ["rm_invoice_customer_id_seek_idx"],
            id="GetOpenInvoices by CustomerId",
        ),
        pytest.param(
            _OPEN_INVOICES[False],
            (None, None, None, 101),
            ["rm_invoice_status_seek_idx"],
            id="GetOpenInvoices of every customer",
        ),
        pytest.param(
            _DELIVERIES, (SOME_ID, None, None, 101), ["rm_delivery_workarea_id_seek_idx"], id="GetDeliveries"
        ),
    ],
)
async def test_a_list_query_looks_up_what_it_filters_by(
    pool: asyncpg.Pool[Any], sql: str, args: tuple[Any, ...], indexes: list[str]
) -> None:
    account_id = await make_account(pool)
    async with pool.acquire() as connection, connection.transaction():
        for fill in FILL:
            await connection.execute(fill, account_id, ROWS)
    await pool.execute("ANALYZE rm_order, rm_person, rm_organisation, rm_customer, rm_invoice, rm_delivery")
    async with tenant_transaction(pool, account_id) as connection:
        await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        statement = await connection.prepare(f"EXPLAIN {sql}")
        plan = "\n".join(r[0] for r in await statement.fetch(*args))
    for index in indexes:
        assert index in plan, plan
