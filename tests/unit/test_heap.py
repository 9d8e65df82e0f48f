"""`core.heap`: what is alive once a process is ready leaves the collector's sight; bulk work pauses it."""

from __future__ import annotations

import gc

from core.heap import collections_paused, freeze_startup


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


def test_collections_pause_while_any_block_runs_and_resume_after_the_last() -> None:
    assert gc.isenabled()
    first, second = collections_paused(), collections_paused()
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()  # another task's block, overlapping the first
    first.__exit__(None, None, None)
    assert not gc.isenabled(), "the second block still runs"
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_off_before_the_pause_stays_off() -> None:
    gc.disable()
    try:
        with collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
