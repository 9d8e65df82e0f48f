"""The ERP's read models, and how each shows what it shows of another element (`commands.model.read_models`).

A customer's name is its party's (a Person's or an Organisation's), and a party is renamed in its
own stream. Four queries show it, each served the way its use asks:

- GetCustomers pages through customers by name, so the name is **copied** onto each customer row,
  where an index holds them in that order. A rename touches the party's customers: a few rows.
- GetOrders shows each order's current customer name. A big customer has a million orders, read a
  page at a time, far more often than its party is renamed: the name is **copied** onto the orders
  too, and a rename fans out to them in chunks (`queries.projector.fan_out`).
- GetOpenInvoices and GetDeliveries show it **combined**: one join to the customers' (or the
  orders') table, which holds the name already, so that a rename writes no invoice or delivery.
- GetCustomer shows the party's email and addresses **joined** from the party's own table: one
  customer is read at a time, and an address change writes nothing else.

GetOpenAmounts shows each workarea's customers and what they have open, from a read model
**chained** to the customers one: fed by the changes it makes to its customer rows (every order
reserves on one), not by events, so it repeats none of the customers' rules.
"""

from __future__ import annotations

from commands.model.read_models import Chained, ReadModel, Shown, Strategy

PARTIES = ("Person", "Organisation")


def _of_party(attribute: str) -> tuple[str, ...]:
    return tuple(f"{party}.{attribute}" for party in PARTIES)


READ_MODELS = (
    ReadModel(
        "orders",
        ("Order",),
        shows=(Shown("Order", "PartyName", "CustomerId", ("Customer.PartyName",), Strategy.COPIED),),
    ),
    ReadModel(
        "customers",
        ("Customer", "Person", "Organisation", "OwnOrganisation", "Workarea"),
        shows=(
            Shown("Customer", "PartyName", "PartyId", _of_party("Name"), Strategy.COPIED, searched=True),
            Shown("Customer", "Email", "PartyId", _of_party("Email"), Strategy.JOINED),
            Shown("Customer", "Addresses", "PartyId", _of_party("Addresses"), Strategy.JOINED),
        ),
    ),
    ReadModel(
        "activities",
        ("Delivery", "Invoice"),
        shows=(
            Shown("Invoice", "PartyName", "CustomerId", ("Customer.PartyName",), Strategy.COMBINED),
            Shown("Delivery", "PartyName", "OrderId", ("Order.PartyName",), Strategy.COMBINED),
        ),
    ),
)
"""Every read model of the ERP fed by events."""
CHAINED = (Chained("open_amounts", "customers", "Customer", "WorkareaId", ("OpenAmount",)),)
"""Read models fed by another one: what the customers of each workarea have open (GetOpenAmounts),
totalled from the customers read model's rows as it changes them, with a checkpoint of its own."""
