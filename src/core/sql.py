"""SQL that lives in `.sql` files beside the Python that calls it (emmett's store functions)."""

from __future__ import annotations

from pathlib import Path


def sql_beside(module_file: str, name: str) -> str:
    """The text of the SQL file `name` in the directory of the module `module_file` (pass `__file__`)."""
    return Path(module_file).with_name(name).read_text(encoding="utf-8")
