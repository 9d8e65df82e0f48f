"""Notification event ids, what a Last-Event-ID is read as, and secret query parameters kept out of
traces."""

from __future__ import annotations

from core.secret_query import scrubbed
from queries.event_ids import MAX_ID, event_id, told_by
from queries.resume import PAIRS, missed


def test_an_id_carries_every_pair_told_in_a_stable_order() -> None:
    told = {("orders", "Order"): 17, ("customers", "Person"): 4}
    assert event_id(told) == "customers.Person=4,orders.Order=17"
    assert told_by(event_id(told)) == told
    assert event_id({}) == ""


def test_no_last_event_id_is_a_new_stream_and_a_bad_one_was_told_nothing() -> None:
    assert told_by(None) is None
    for bad in (
        "",
        " ",
        "orders.Order=banana",
        "orders.Order=1,",
        "orders=1",
        "orders.Order=-1",
        "orders.Order=01",
        "1orders.Order=1",
        "orders.Order=99999999999999999999",
        "orders.Order=9223372036854775808",
        "orders.Order=1;DROP",
        "x" * (MAX_ID + 1),
    ):
        assert told_by(bad) == {}, bad
    assert told_by("orders.Order=9223372036854775807") == {("orders", "Order"): 2**63 - 1}


def test_a_resumed_client_hears_only_what_moved_past_what_it_was_told() -> None:
    current = {("orders", "Order"): 5, ("customers", "Person"): 2, ("customers", "Customer"): 0}
    assert missed({("orders", "Order"): 5}, current) == {("customers", "Person"): 2}
    assert missed({}, current) == {("customers", "Person"): 2, ("orders", "Order"): 5}
    assert missed({("orders", "Order"): 9, ("customers", "Person"): 2}, current) == {}


def test_ids_name_only_what_notifications_announce() -> None:
    assert ("orders", "Order") in PAIRS
    assert ("orders", "Person") in PAIRS  # the orders' fan-outs say how far they show names
    assert ("activities", "Order") not in PAIRS  # combined at query time: never announced
    assert ("open_amounts", "Customer") in PAIRS


def test_tickets_are_redacted_from_what_telemetry_sees() -> None:
    assert scrubbed(b"Ticket=abc&After=x") == b"Ticket=REDACTED&After=x"
    assert scrubbed(b"ticket=abc") == b"ticket=REDACTED"
    assert scrubbed(b"a=1&Ticket=abc%2Fdef&Ticket=second") == b"a=1&Ticket=REDACTED&Ticket=REDACTED"
    query = b"CustomerName=Ada&Limit=10"
    assert scrubbed(query) is query


def test_a_ticket_whose_name_is_percent_encoded_is_redacted_too() -> None:
    # Litestar decodes parameter names, so `Tick%65t` opens a stream as `Ticket` does.
    assert scrubbed(b"Tick%65t=abc&After=x") == b"Ticket=REDACTED&After=x"
