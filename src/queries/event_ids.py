"""The `id:` of each notification event: the positions its stream has told the client so far.

`orders.Order=17,customers.Customer=4` says the client has heard that read model `orders` shows
`Order` events up to position 17, and `customers` shows `Customer` events up to 4. A browser's
EventSource sends the last id it saw as `Last-Event-ID` when it reconnects, to any API process:
the id alone says where the client is, so the new stream tells it what moved since
(`queries.resume`). Names are read models' and stream types' (letters, digits, `_`).
"""

from __future__ import annotations

import re

Told = dict[tuple[str, str], int]
"""(read model, stream type) → the latest position the client was told."""

MAX_ID = 8192
"""Characters a Last-Event-ID may have; a longer one is read as none that can be understood."""
MAX_POSITION = 2**63 - 1
_NAME = r"[A-Za-z][A-Za-z0-9_]{0,63}"
_PAIR = re.compile(rf"({_NAME})\.({_NAME})=(0|[1-9][0-9]{{0,18}})")


def event_id(told: Told) -> str:
    """The id that carries `told` (in a stable order)."""
    return ",".join(f"{p}.{t}={n}" for (p, t), n in sorted(told.items()))


def told_by(last_event_id: str | None) -> Told | None:
    """What a reconnecting client was told: None when it sent no Last-Event-ID (a new stream); an
    empty map for one that cannot be read (malformed, too long), so it hears every position anew."""
    if last_event_id is None:
        return None
    told: Told = {}
    if not last_event_id.strip() or len(last_event_id) > MAX_ID:
        return told
    for item in last_event_id.strip().split(","):
        match = _PAIR.fullmatch(item.strip())
        if match is None or int(match[3]) > MAX_POSITION:
            return {}
        told[(match[1], match[2])] = int(match[3])
    return told
