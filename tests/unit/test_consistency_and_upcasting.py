"""Consistency tokens and upcasters: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from commands.store.upcasting import Upcasters
from core.tokens import InvalidToken, decode_token, encode_token


def test_token_round_trip() -> None:
    positions = {"Order": 17, "Customer": 4}
    assert decode_token(encode_token(positions)) == positions
    assert encode_token(positions) == "Customer:4,Order:17"


@pytest.mark.parametrize("token", ["", "Order", "Order:", "Order:-1", ":5", "Order:1;DROP", "1x:2"])
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(token)


def test_upcasters_chain_from_the_stored_version() -> None:
    upcasters = Upcasters()

    def v1_to_v2(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "OrderPlaced", {**payload, "Currency": "EUR"}

    def v2_to_v3(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "OrderPlaced", {**payload, "Channel": "web"}

    upcasters.register("OrderPlaced", 1, v1_to_v2)
    upcasters.register("OrderPlaced", 2, v2_to_v3)
    assert upcasters.upcast("OrderPlaced", 1, {"Total": "1"}) == [
        ("OrderPlaced", {"Total": "1", "Currency": "EUR", "Channel": "web"})
    ]
    assert upcasters.upcast("OrderPlaced", 3, {"Total": "1"}) == [("OrderPlaced", {"Total": "1"})]
    with pytest.raises(ValueError, match="already registered"):
        upcasters.register("OrderPlaced", 1, v1_to_v2)
