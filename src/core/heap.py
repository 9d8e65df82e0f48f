"""The garbage collector in a long-running process: what startup built is never looked at again.

Python's full collection walks every object that can hold others, and an API process holds
hundreds of thousands from its imports, its app and its clients alone. Those were walked on every
full collection: 50 to 115 ms with the event loop stopped, a few times a minute under load (heavy
neighbour bench: every request in flight then waited). Frozen once the process is up, they leave
the collector's generations for good, and a full collection walks only what came since (6 to 16 ms
on the same line).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze_startup() -> None:
    """Collect what startup left behind, then move every object still alive out of the collector's
    sight (`gc.freeze`). Call once, when the process is ready to serve."""
    gc.collect()
    gc.freeze()


_paused = 0
"""How many blocks pause the collector now (they may overlap, in different tasks)."""
_was_enabled = True


@contextmanager
def collections_paused() -> Iterator[None]:
    """No collection while the block runs (a bulk step that allocates a few objects per row for
    tens of thousands of rows, and frees them all at its end): reference counting frees them, and
    collections meanwhile would only walk them again and again (a rebuild's chunk spent more time
    in the collector than in its own work). Blocks may overlap; once the last ends, the collector
    is on again, if it was before the first."""
    global _paused, _was_enabled
    if _paused == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0 and _was_enabled:
            gc.enable()


def collect_young() -> None:
    """One collection of the two young generations: what a paused stretch of bulk work left in
    cycles, found at the cost of what is young and still alive."""
    gc.collect(1)
