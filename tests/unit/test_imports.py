"""Reading a bulk import (names or JSON lines; every bad line by number) and placing many accounts."""

from __future__ import annotations

from collections import Counter

import pytest

from tenancy.imports import MAX_ACCOUNTS, BadImport, Entry, parse_import
from tenancy.routing import place, place_many


def problems(data: bytes) -> list[tuple[int, str]]:
    with pytest.raises(BadImport) as refused:
        parse_import(data)
    return refused.value.problems


def test_one_name_a_line_with_blank_lines_and_crlf() -> None:
    data = b"Acme\r\n\r\n  Globex Corp  \n\nInitech\n"
    assert parse_import(data) == [Entry(1, "Acme"), Entry(3, "Globex Corp"), Entry(5, "Initech")]


def test_json_lines() -> None:
    data = '{"Name": "Acme"}\n\n{"Name": "Zoë"}\n'.encode()
    assert parse_import(data) == [Entry(1, "Acme"), Entry(3, "Zoë")]


def test_a_byte_order_mark_is_not_part_of_the_first_line() -> None:
    assert parse_import(b'\xef\xbb\xbf{"Name": "Acme"}\n') == [Entry(1, "Acme")]
    assert parse_import(b"\xef\xbb\xbfAcme\n") == [Entry(1, "Acme")]


def test_a_name_file_may_have_a_name_starting_with_a_brace_after_the_first_line() -> None:
    assert parse_import(b"Acme\n{curly}\n") == [Entry(1, "Acme"), Entry(2, "{curly}")]


def test_every_bad_line_is_reported_by_its_number() -> None:
    data = b"Acme\n" + b"x" * 201 + b"\nAcme\nbad\xff\nNUL\x00here\n"
    found = problems(data)
    assert [line for line, _ in found] == [2, 3, 4, 5]
    assert "at most 200 characters" in found[0][1]
    assert "already on line 1" in found[1][1]
    assert "UTF-8" in found[2][1]
    assert "U+0000" in found[3][1]


def test_bad_json_lines_say_what_is_wrong() -> None:
    deep = b'{"Name": "Deep", "X": ' + b"[" * 100_000 + b"\n"
    data = b'{"Name": "Acme"}\n{"Name": 7}\n{"Nam": "x"}\nnot json\n{"Name": "  "}\n' + deep
    found = dict(problems(data))
    assert set(found) == {2, 3, 4, 5, 6}
    assert "Expected `str`" in found[2]
    assert "Nam" in found[3]
    assert "not valid JSON" in found[4]
    assert "blank" in found[5]
    assert "unknown field `X`" in found[6]


def test_an_empty_import_opens_nothing_and_says_so() -> None:
    assert problems(b"\n  \n") == [(0, "the import names no accounts")]


def test_an_import_has_a_bound() -> None:
    data = "\n".join(f"a{i}" for i in range(MAX_ACCOUNTS + 1)).encode()
    assert "at most 100,000 accounts" in problems(data)[-1][1]


def test_the_message_names_the_first_hundred_and_counts_the_rest() -> None:
    data = b"".join(b"x" * 201 + b"\n" for _ in range(150))
    with pytest.raises(BadImport) as refused:
        parse_import(data)
    assert len(refused.value.problems) == 150
    assert str(refused.value).endswith("; and 50 more bad lines")


def test_many_accounts_fill_the_least_used_databases_first_and_then_evenly() -> None:
    placed = place_many(["main", "b", "c"], {"main": 10, "b": 4}, 20)
    counts = Counter(placed)
    assert counts == {"c": 11, "b": 7, "main": 2}  # 12, 11 and 11 accounts then
    assert placed[0] == "c"
    # One at a time, `place` chooses the same databases in the same order.
    held = {"main": 10, "b": 4, "c": 0}
    for database in placed:
        assert place(["main", "b", "c"], held) == database
        held[database] += 1
