"""Read-model declarations the engine cannot serve stop the process at start-up, with the line they
were written on (`commands.model.read_models.check_read_models`), never at the first event."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from commands.erp_model import ERP, READ_MODELS
from commands.model import Attr, Element, Kind, Type
from commands.model.read_models import BadDeclaration, Chained, ReadModel, Shown, Strategy, check_read_models
from queries.registry import SHOWS

C = Strategy.COPIED


def here() -> str:
    """`unit/test_read_models.py:<the caller's line>`: where a declaration on that line was written."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return f"unit/{Path(__file__).name}:{frame.f_back.f_lineno}"


def with_orders(*shows: Shown) -> tuple[ReadModel, ...]:
    """The ERP's read models, with the orders one showing `shows` instead of its own."""
    return tuple(ReadModel(r.name, r.elements, shows) if r.name == "orders" else r for r in READ_MODELS)


def refused(read_models: tuple[ReadModel, ...]) -> str:
    with pytest.raises(BadDeclaration) as error:
        check_read_models(ERP.elements, read_models)
    return str(error.value)


def test_the_erps_declarations_are_served() -> None:
    check_read_models(ERP.elements, READ_MODELS)
    assert {c.name for c in SHOWS.copies} == {"Order.PartyName", "Customer.PartyName"}


def test_an_attribute_no_element_has_is_refused_naming_its_line() -> None:
    bad, line = Shown("Order", "PartyName", "CustomerId", ("Customer.Nickname",), C), here()
    message = refused(with_orders(bad))
    assert message.startswith(f"{line}: ") and "Customer has no attribute Nickname" in message


def test_an_element_the_model_lacks_is_refused() -> None:
    bad, line = Shown("Order", "PartyName", "CustomerId", ("Client.Name",), C), here()
    assert refused(with_orders(bad)).startswith(f"{line}: Client.Name: the model has no element Client")


def test_a_strategy_for_an_attribute_that_is_not_another_elements_is_refused() -> None:
    own, line = Shown("Order", "Placed", "CustomerId", ("Order.CustomerName",), C), here()
    assert refused(with_orders(own)).startswith(f"{line}: Order.CustomerName is Order's own")
    no_reference, line = Shown("Order", "Placed", "CustomerName", ("Customer.PartyName",), C), here()
    assert "CustomerName refers to no element" in refused(with_orders(no_reference))
    assert refused(with_orders(no_reference)).startswith(line)
    elsewhere, line = Shown("Order", "Where", "CustomerId", ("Workarea.Name",), C), here()
    assert refused(with_orders(elsewhere)).startswith(
        f"{line}: Workarea.Name: Order.CustomerId names a Customer"
    )


def test_an_attribute_shown_from_itself_is_refused() -> None:
    """Two elements that refer to each other, each copying the other's copy: a cycle no change could
    ever settle."""
    a = Element(
        "A", Kind.ENTITY, (Attr("AId", Type.ID, references="A"), Attr("BId", Type.ID, references="B"))
    )
    b = Element(
        "B", Kind.ENTITY, (Attr("BId", Type.ID, references="B"), Attr("AId", Type.ID, references="A"))
    )
    first, line = Shown("A", "Echo", "BId", ("B.Echo",), C), here()
    looped = (ReadModel("both", ("A", "B"), (first, Shown("B", "Echo", "AId", ("A.Echo",), C))),)
    with pytest.raises(BadDeclaration) as error:
        check_read_models({"A": a, "B": b}, looped)
    assert str(error.value) == f"{line}: A.Echo is shown from itself: A.Echo -> B.Echo -> A.Echo"


def test_a_copy_of_an_attribute_that_is_only_joined_is_refused() -> None:
    joined = tuple(
        ReadModel(
            r.name,
            r.elements,
            tuple(
                Shown(s.element, s.name, s.via, s.sources, Strategy.JOINED, line=s.line)
                if s.name == "PartyName"
                else s
                for s in r.shows
            ),
        )
        if r.name == "customers"
        else r
        for r in READ_MODELS
    )
    message = refused(joined)
    assert "Customer.PartyName is shown on Customer joined" in message
    assert "only a copied attribute is in Customer's table" in message


def test_a_bad_declaration_stops_the_process_at_start_up() -> None:
    """The ERP's read models are checked when the model is imported: `erp api` and `erp worker`
    never start with one the engine cannot serve."""
    script = textwrap.dedent(
        """
        import sys, types
        from commands.model.read_models import ReadModel
        declared = types.ModuleType("commands.erp_model.read_models")
        declared.READ_MODELS = (ReadModel("orders", ("Order",)), ReadModel("stray", ("Order",)))
        declared.CHAINED = ()
        sys.modules[declared.__name__] = declared
        import queries.registry  # what `erp api` and `erp worker` import first
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "BadDeclaration" in done.stderr and "Order is in read model orders already" in done.stderr


def test_a_chained_read_model_fed_by_itself_is_refused_naming_its_line() -> None:
    looped, line = Chained("open_amounts", "open_amounts", "Customer", "WorkareaId", ("OpenAmount",)), here()
    with pytest.raises(BadDeclaration) as error:
        check_read_models(ERP.elements, READ_MODELS, (looped,))
    assert str(error.value) == f"{line}: open_amounts is fed by itself"


@pytest.mark.parametrize(
    ("declared", "refusal"),
    [
        (Chained("x", "orders", "Customer", "WorkareaId", ("OpenAmount",)), "orders has no rows of Customer"),
        (Chained("x", "nowhere", "Customer", "WorkareaId", ()), "fed by nowhere, which is no read model"),
        (Chained("x", "customers", "Customer", "SpendingLimit", ()), "refers to no element"),
        (Chained("x", "customers", "Customer", "WorkareaId", ("Total",)), "Customer has no attribute Total"),
        (Chained("x", "customers", "Customer", "WorkareaId", ("PartyId",)), "PartyId is id, not an amount"),
        (Chained("orders", "customers", "Customer", "WorkareaId", ()), "named 'orders' is declared twice"),
    ],
)
def test_a_chained_read_model_the_engine_cannot_serve_is_refused(declared: Chained, refusal: str) -> None:
    with pytest.raises(BadDeclaration) as error:
        check_read_models(ERP.elements, READ_MODELS, (declared,))
    assert refusal in str(error.value) and str(error.value).startswith("unit/test_read_models.py:")


def test_a_query_waits_for_the_fan_outs_of_what_it_shows_only() -> None:
    """GetOpenInvoices shows the customer's name from the customers' table and joins the orders only
    for the name an order was placed with: after a rename it does not wait for the orders' copies.
    GetDeliveries shows the orders' copy, so it does."""
    from queries.views import QUERIES

    invoices, deliveries = QUERIES["GetOpenInvoices"].scope, QUERIES["GetDeliveries"].scope
    assert invoices is not None and deliveries is not None
    assert invoices.fan_outs == ("customers",)
    assert "orders" in deliveries.fan_outs
    assert invoices.owners["Organisation"] == deliveries.owners["Organisation"] == "customers"
    assert invoices.owners["Order"] == "orders" and invoices.owners["Invoice"] == "activities"
