"""The rule of a spending limit lowered below what a customer has open, on the model alone.

As in SAP credit management: a credit manager may cut a customer's limit below its exposure at
once; the customer is then over its limit, its new orders are refused, and what it already ordered
goes on (delivered, invoiced, paid, cancelled) until its open amount is within the limit again.
"""

from __future__ import annotations

import uuid

import pytest

from commands.errors import BusinessRuleViolation
from tests.memory_store import MemoryEventStore
from tests.unit.test_model import customer_with_limit, lines, run


async def order(store: MemoryEventStore, customer: str, price: str) -> str:
    order_id = str(uuid.uuid4())
    await run(
        store,
        "PlaceOrder",
        OrderId=order_id,
        CustomerName="Ada",
        CustomerId=customer,
        OrderLines=lines((1, price)),
    )
    return order_id


async def test_a_limit_below_the_open_amount_stands_and_blocks_new_orders_until_payments() -> None:
    store = MemoryEventStore()
    customer = await customer_with_limit(store, "100.00")
    first, second = await order(store, customer, "50.00"), await order(store, customer, "30.00")

    lowered = await run(store, "ChangeSpendingLimit", CustomerId=customer, SpendingLimit="50.00")
    assert (lowered.state["SpendingLimit"], lowered.state["OpenAmount"]) == ("50.00", "80.00")

    for price in ("1.00", "0.00"):
        with pytest.raises(BusinessRuleViolation) as refused:
            await order(store, customer, price)
        detail = str(refused.value)
        assert "spending limit of 50.00" in detail and "open amount of 80.00" in detail, detail
        assert "over its limit" in detail, detail

    # What was ordered goes on: delivered, invoiced, paid, cancelled.
    workarea = str(uuid.uuid4())
    await run(store, "CreateWorkarea", WorkareaId=workarea, Name="South")
    await run(store, "DeliverOrder", DeliveryId=str(uuid.uuid4()), OrderId=second, WorkareaId=workarea)
    invoice = str(uuid.uuid4())
    await run(store, "InvoiceOrder", InvoiceId=invoice, OrderId=first)
    paid = await run(store, "PayInvoice", InvoiceId=invoice)
    assert paid.status == "Paid"

    # 30.00 open against 50.00: 20.00 fits, and not a cent more; a cancellation frees its amount.
    third = await order(store, customer, "20.00")
    with pytest.raises(BusinessRuleViolation) as refused:
        await order(store, customer, "0.01")
    assert "over its limit" not in str(refused.value)
    await run(store, "CancelOrder", OrderId=third, Reason="cut")
    await order(store, customer, "20.00")
