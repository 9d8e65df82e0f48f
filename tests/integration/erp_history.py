"""An account's history that exercises every event the ERP's read models apply: parties registered,
renamed and given addresses, customers, orders with and without a customer, cancelled, delivered and
invoiced, invoices paid, limits changed."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any
from uuid import UUID

import asyncpg

from commands.service import CommandService

READ_MODEL_TABLES = (
    "rm_order",
    "rm_customer",
    "rm_person",
    "rm_organisation",
    "rm_own_organisation",
    "rm_workarea",
    "rm_delivery",
    "rm_invoice",
)


async def run(service: CommandService, account_id: UUID, command: str, body: dict[str, Any]) -> None:
    await service.execute(account_id, service.parse(command, json.dumps(body).encode()))


def _id() -> str:
    return str(uuid.uuid4())


async def erp_history(service: CommandService, account_id: UUID, rounds: int = 3, seed: int = 1) -> None:
    """`rounds` of the ERP's everyday work in one account."""
    rng = random.Random(seed)
    workarea = _id()
    await run(service, account_id, "CreateWorkarea", {"WorkareaId": workarea, "Name": "North"})
    await run(service, account_id, "SetUpOwnOrganisation", {"OwnOrganisationId": _id(), "Name": "Us Ltd"})
    for round_ in range(rounds):
        person, organisation = _id(), _id()
        await run(
            service,
            account_id,
            "RegisterPerson",
            {"PersonId": person, "Name": f"Ada {round_}", "Email": f"ada{round_}@example.com"},
        )
        await run(
            service, account_id, "RegisterOrganisation", {"OrganisationId": organisation, "Name": "Acme"}
        )
        address = {"Kind": "Billing", "Street": "1 Main St", "City": "Leeds", "Country": "GB"}
        await run(service, account_id, "ChangeAddress", {"PartyId": person, "Address": address})
        await run(service, account_id, "ChangeAddress", {"PartyId": organisation, "Address": address})
        customers = []
        for party in (person, organisation):
            customer = _id()
            customers.append(customer)
            await run(
                service,
                account_id,
                "MakeCustomer",
                {"CustomerId": customer, "PartyId": party, "WorkareaId": workarea, "SpendingLimit": "500.00"},
            )
        await run(service, account_id, "RenamePerson", {"PersonId": person, "Name": f"Ada King {round_}"})
        for n in range(4):
            order = _id()
            price = f"{rng.randint(1, 40)}.{rng.randint(0, 99):02d}"
            body: dict[str, Any] = {
                "OrderId": order,
                "CustomerName": "Walk-in" if n == 3 else "Known",
                "OrderLines": [{"ProductCode": f"P-{n}", "Quantity": rng.randint(1, 3), "UnitPrice": price}],
            }
            if n < 3:
                body["CustomerId"] = customers[n % 2]
            await run(service, account_id, "PlaceOrder", body)
            if n == 0:
                await run(service, account_id, "CancelOrder", {"OrderId": order, "Reason": "changed mind"})
            elif n in (1, 3):
                await run(
                    service,
                    account_id,
                    "DeliverOrder",
                    {"DeliveryId": _id(), "OrderId": order, "WorkareaId": workarea},
                )
                invoice = _id()
                await run(service, account_id, "InvoiceOrder", {"InvoiceId": invoice, "OrderId": order})
                if n == 1:
                    await run(service, account_id, "PayInvoice", {"InvoiceId": invoice})
        await run(
            service,
            account_id,
            "ChangeSpendingLimit",
            {"CustomerId": customers[0], "SpendingLimit": "750.00"},
        )


async def read_models(
    pool: asyncpg.Pool[Any], tables: tuple[str, ...] = READ_MODEL_TABLES
) -> dict[str, list[str]]:
    """Every row of the read-model tables, as text, in a fixed order: two equal answers are the same
    read models, row for row."""
    found: dict[str, list[str]] = {}
    for table in tables:
        rows = await pool.fetch(f"SELECT to_jsonb(t)::text AS row FROM {table} t ORDER BY account_id, id")
        found[table] = [r["row"] for r in rows]
    return found
