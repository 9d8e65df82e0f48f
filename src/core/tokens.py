"""Consistency tokens: which SequenceNumber per StreamType a read model must have reached.

A token is opaque to clients; it reads `Order:17,Customer:4`.
"""

from __future__ import annotations

import re

_PART = re.compile(r"^([A-Za-z][A-Za-z0-9_]{0,99}):([0-9]{1,18})$")


class InvalidToken(ValueError):
    """The text is not a consistency token."""


def encode_token(positions: dict[str, int]) -> str:
    """The token for having seen `positions` ({StreamType: SequenceNumber})."""
    return ",".join(f"{stream_type}:{position}" for stream_type, position in sorted(positions.items()))


def decode_token(token: str) -> dict[str, int]:
    """The positions a token names; raises InvalidToken if it is not one."""
    positions: dict[str, int] = {}
    for part in token.split(","):
        match = _PART.match(part.strip())
        if match is None:
            raise InvalidToken(
                f"ConsistentWith must look like 'Order:17' (StreamType:Position, comma separated), "
                f"got {token!r}"
            )
        positions[match.group(1)] = max(positions.get(match.group(1), 0), int(match.group(2)))
    return positions
