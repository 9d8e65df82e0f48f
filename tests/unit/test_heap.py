"""`core.heap.freeze_startup`: what is alive when a process is ready leaves the collector's sight."""

from __future__ import annotations

import gc

from core.heap import freeze_startup


def test_freezing_takes_the_objects_alive_out_of_the_collectors_generations() -> None:
    kept = [{"n": n} for n in range(10_000)]  # containers, as a process's startup leaves behind
    try:
        freeze_startup()
        assert gc.get_freeze_count() >= len(kept)
        assert all(gc.get_count()[generation] < 1_000 for generation in range(3)), gc.get_count()
        assert not any(gc.get_objects(generation) for generation in (1, 2)), "the old generations are empty"
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
