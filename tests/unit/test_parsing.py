"""Command parsing: 400 for malformed JSON, 422 for invalid fields, 404 for unknown commands."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from commands.errors import InvalidCommand, MalformedCommand, UnknownCommand
from commands.service import CommandService, command_id_for
from commands.store.event_store import EventStore


def service() -> CommandService:
    return CommandService(pool=None, store=EventStore())  # type: ignore[arg-type]  # parsing needs no database


def body(**overrides: Any) -> bytes:
    payload: dict[str, Any] = {
        "OrderId": str(uuid.uuid4()),
        "CustomerName": "Linus Torvalds",
        "OrderLines": [{"ProductCode": "KB-1", "Quantity": 2, "UnitPrice": "10.00"}],
    }
    payload.update(overrides)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


def line(**overrides: Any) -> list[dict[str, Any]]:
    return [{"ProductCode": "KB-1", "Quantity": 1, "UnitPrice": "1.00", **overrides}]


def test_the_seed_payload_parses() -> None:
    parsed = service().parse("PlaceOrder", body())
    assert parsed.spec.name == "PlaceOrder"
    assert parsed.message.expected_revision is None


def test_unit_price_is_a_string_never_a_json_number() -> None:
    """A JSON number would be read as a binary float by most clients: money is a decimal string."""
    with pytest.raises(InvalidCommand, match="UnitPrice"):
        service().parse("PlaceOrder", body(OrderLines=line(UnitPrice=0.1)))
    parsed = service().parse("PlaceOrder", body(OrderLines=line(UnitPrice="0.1")))
    assert str(parsed.message.order_lines[0].unit_price) == "0.1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b'{"OrderId": "x",'])
def test_malformed_json_is_400(raw: bytes) -> None:
    with pytest.raises(MalformedCommand, match="not valid JSON"):
        service().parse("PlaceOrder", raw)


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        (body(OrderId="nope"), "OrderId"),
        (body(OrderId=...), "OrderId"),
        (body(CustomerName=""), "CustomerName"),
        (body(CustomerName=5), "CustomerName"),
        (body(OrderLines=[]), "OrderLines"),
        (body(OrderLines=line(Quantity=0)), "Quantity"),
        (body(OrderLines=line(Quantity=-1)), "Quantity"),
        (body(OrderLines=line(Quantity=1.5)), "Quantity"),
        (body(OrderLines=line(UnitPrice="-1")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="1.001")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="NaN")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="abc")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="1E+3")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="1_000")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice=" 1 ")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="\uff11\uff12")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice="-0")), "UnitPrice"),
        (body(OrderLines=line(UnitPrice=12)), "UnitPrice"),
        (body(Surprise=1), "Surprise"),
        (body(ExpectedRevision=-1), "ExpectedRevision"),
        (b"[]", "object"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(payload: bytes, mentions: str) -> None:
    with pytest.raises(InvalidCommand) as error:
        service().parse("PlaceOrder", payload)
    assert mentions in str(error.value)


def test_unknown_command_lists_the_known_ones() -> None:
    with pytest.raises(UnknownCommand, match="PlaceOrder"):
        service().parse("LaunchRocket", body())


def test_same_command_same_hash_different_payload_different_hash() -> None:
    order_id = str(uuid.uuid4())
    a = service().parse("PlaceOrder", body(OrderId=order_id))
    b = service().parse("PlaceOrder", body(OrderId=order_id))
    c = service().parse("PlaceOrder", body(OrderId=order_id, CustomerName="Other"))
    assert a.request_hash == b.request_hash != c.request_hash


def test_idempotency_keys_map_to_stable_command_ids() -> None:
    key = str(uuid.uuid4())
    assert command_id_for(key) == command_id_for(key)
    assert command_id_for(key)[0] != command_id_for(key.upper())[0]  # opaque: the exact text decides
    assert command_id_for("order-17") == command_id_for("order-17")
    assert command_id_for("order-17")[0] != command_id_for("order-18")[0]
    assert command_id_for(None)[1] is False
