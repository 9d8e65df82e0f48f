"""Text every API accepts: Postgres `text` and `jsonb` cannot hold U+0000, so no string may contain it."""

from __future__ import annotations

from typing import Annotated

import msgspec

NO_NUL = "^[^\x00]*$"
"""A msgspec/JSON Schema pattern: any string without U+0000."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
"""A display name: 1 to 200 characters."""
