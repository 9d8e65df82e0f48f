"""Reading a bulk import: one account name a line, or JSON lines (`{"Name": "Acme"}`), checked whole.

Used by `erp accounts import FILE` and POST /accounts/import alike. Every bad line is reported by
its number, and a file with any bad line onboards nobody.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import msgspec

from core.text import Name

MAX_ACCOUNTS = 100_000
"""Accounts one import may open."""
MAX_REPORTED = 100
"""Bad lines named in the error; the rest are counted."""


class ImportLine(msgspec.Struct, forbid_unknown_fields=True, rename="pascal"):
    """One JSON line of an import."""

    name: Name


@dataclass(frozen=True, slots=True)
class Entry:
    """An account to open: its name, and the line that asked for it."""

    line: int
    name: str


class BadImport(ValueError):
    """The import has bad lines (each with its number) and opens nothing."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"line {n}: {what}" if n else what for n, what in problems[:MAX_REPORTED])
        more = len(problems) - MAX_REPORTED
        super().__init__(shown + (f"; and {more} more bad lines" if more > 0 else ""))


_decode_line = msgspec.json.Decoder(ImportLine).decode


def _plain(text: str) -> str:
    """A plain line's name: 1 to 200 characters, no NUL (as `core.text.Name`)."""
    name = text.strip()
    if "\x00" in name:
        raise ValueError("a name may not contain U+0000")
    if len(name) > 200:
        raise ValueError(f"a name has at most 200 characters, this one {len(name)}")
    return name


def _json(text: str) -> str:
    try:
        name = _decode_line(text).name.strip()
    except msgspec.ValidationError as error:
        raise ValueError(f'expected {{"Name": "..."}}: {error}') from None
    except msgspec.DecodeError as error:
        raise ValueError(f"not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    if not name:
        raise ValueError("Name must not be blank")
    return name


def parse_import(data: bytes) -> list[Entry]:
    """The accounts an import file asks for, in file order; BadImport naming every bad line.

    JSON lines if the first non-blank line starts with `{`, else one name a line. Blank lines and a
    leading byte-order mark are skipped. A name may appear once.
    """
    problems: list[tuple[int, str]] = []
    entries: list[Entry] = []
    first_line: dict[str, int] = {}
    lines = data.removeprefix(codecs.BOM_UTF8).split(b"\n")  # a spreadsheet's export may start so
    start = next((raw.lstrip() for raw in lines if raw.strip()), b"")
    read = _json if start.startswith(b"{") else _plain
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode()
        except UnicodeDecodeError as error:
            problems.append((number, f"not valid UTF-8 at byte {error.start + 1}"))
            continue
        if not text.strip():
            continue
        try:
            name = read(text)
        except ValueError as error:
            problems.append((number, str(error)))
            continue
        if name in first_line:
            problems.append((number, f"{name!r} is already on line {first_line[name]}"))
            continue
        first_line[name] = number
        entries.append(Entry(number, name))
    if not entries and not problems:
        problems.append((0, "the import names no accounts"))
    if len(entries) > MAX_ACCOUNTS:
        problems.append((0, f"an import opens at most {MAX_ACCOUNTS:,} accounts, this one {len(entries):,}"))
    if problems:
        raise BadImport(problems)
    return entries
