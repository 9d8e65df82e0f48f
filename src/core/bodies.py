"""JSON request bodies: one strict decoder for all of them, with a limit on nesting.

Every JSON body the API reads (commands, customisations, accounts, moves, rebuilds) goes through
`decode`: msgspec in strict mode (no `"10"` for 10, no `"true"` for true, no unknown fields where
the type forbids them), after a check that the body is nested at most `MAX_JSON_DEPTH` deep.
msgspec decodes nested arrays and objects recursively, so a body of a thousand `[` raised
RecursionError (a 500); the check is linear and never recursive, and cheap when a body holds few
brackets. Bad UTF-8 inside a string raised UnicodeDecodeError; it is `MalformedBody` too.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

MAX_BODY = 1024 * 1024
"""Bytes a request body may have (the app's limit; an import's has its own): more is 413."""
MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects a JSON body may have. The model's own bodies nest about
5 deep (a command, its lines or addresses, `Custom`); a deeper body is refused with 400."""

EMPTY_BODY = "the body is empty, which is not valid JSON; send a JSON object"

T = TypeVar("T")


class MalformedBody(ValueError):
    """Not JSON: empty, not well-formed, not UTF-8, or nested deeper than MAX_JSON_DEPTH (HTTP 400)."""


class InvalidBody(ValueError):
    """Well-formed JSON of the wrong shape: a field missing, unknown or of the wrong type (HTTP 422)."""


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """MalformedBody if `body` nests arrays and objects deeper than `limit`.

    Linear, never recursive, and a handful of passes in C over the body (about 1 ms for the 1 MiB
    order of 18,000 lines):

    1. A body with at most `limit` opening brackets cannot be deeper (the common case).
    2. The escapes that matter go: escaped backslashes, then escaped quotes; every quote left
       opens or closes a string.
    3. Everything but quotes and brackets goes. Two quotes side by side are an empty string or the
       end of one string and the start of the next: dropping them changes nothing, and leaves
       quotes only around strings that hold brackets (rare), which splitting on quotes drops.
    4. What is left are the brackets outside strings. `limit` rounds each remove the innermost
       pairs `[]` (one level a round); a pair still there was nested deeper than `limit`. More
       than `limit` openers never closed would also make the decoder recurse that deep.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = body.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    brackets = structure.translate(_SQUARE)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    if b"[]" in brackets or brackets.count(b"[") > limit:
        raise MalformedBody(f"the body is nested too deeply: at most {limit} levels of arrays and objects")


def decode(body: bytes, type_: type[T]) -> T:
    """`body` as a `type_`, strictly; MalformedBody (400) or InvalidBody (422, naming the field)."""
    if not body.strip():
        raise MalformedBody(EMPTY_BODY)
    check_depth(body)
    try:
        return msgspec.json.decode(body, type=type_, strict=True)
    except msgspec.ValidationError as error:
        # msgspec validates while it parses: a wrong shape is reported before the rest is read, so
        # the rest must still prove to be JSON before the answer is "wrong shape" rather than "not JSON".
        _well_formed(body)
        raise InvalidBody(str(error)) from None
    except msgspec.DecodeError as error:
        raise MalformedBody(f"the body is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise MalformedBody(_not_utf8(error)) from None


def _well_formed(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise MalformedBody(f"the body is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise MalformedBody(_not_utf8(error)) from None


def _not_utf8(error: UnicodeDecodeError) -> str:
    where = error.object[error.start : error.end]
    return f"the body is not valid UTF-8: a string holds {error.reason} ({where!r})"
