"""Group commit's batching rules, with a scripted `send` (the database side is in the integration tests)."""

from __future__ import annotations

import asyncio

import pytest

from commands.store.group_commit import GroupCommit, Outcome

Request = tuple[int, str]
"""(key, name)"""


class Sender:
    """Records every batch; holds each batch until released, so tests control what is in flight."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_names: set[str] = set()
        self.fail_whole = False

    async def __call__(self, requests: list[Request]) -> list[Outcome[str]]:
        self.batches.append([name for _, name in requests])
        await self.release.wait()
        if self.fail_whole:
            raise RuntimeError("the whole batch failed")
        return [ValueError(name) if name in self.fail_names else f"done {name}" for _, name in requests]


def group(sender: Sender, lanes: int = 1, max_batch: int = 50) -> GroupCommit[Request, str]:
    return GroupCommit(sender, key=lambda request: request[0], lanes=lanes, max_batch=max_batch)


async def started(coroutine: object) -> asyncio.Task[str]:
    task: asyncio.Task[str] = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return task


async def test_a_lone_request_is_sent_at_once_on_its_own() -> None:
    sender = Sender()
    assert await group(sender).submit((1, "a")) == "done a"
    assert sender.batches == [["a"]]


async def test_requests_arriving_while_a_batch_is_in_flight_leave_together() -> None:
    sender = Sender()
    commit = group(sender)
    sender.release.clear()
    first = await started(commit.submit((1, "a")))
    later = [await started(commit.submit((key, name))) for key, name in [(2, "b"), (3, "c"), (4, "d")]]
    assert sender.batches == [["a"]]
    sender.release.set()
    assert await asyncio.gather(first, *later) == ["done a", "done b", "done c", "done d"]
    assert sender.batches == [["a"], ["b", "c", "d"]]


async def test_a_batch_holds_one_request_per_key_and_keeps_each_keys_order() -> None:
    sender = Sender()
    commit = group(sender)
    sender.release.clear()
    tasks = [await started(commit.submit(request)) for request in [(9, "x"), (1, "a1"), (1, "a2"), (2, "b1")]]
    tasks.append(await started(commit.submit((1, "a3"))))
    sender.release.set()
    await asyncio.gather(*tasks)
    assert sender.batches == [["x"], ["a1", "b1"], ["a2"], ["a3"]]


async def test_a_batch_is_never_larger_than_max_batch() -> None:
    sender = Sender()
    commit = group(sender, max_batch=3)
    sender.release.clear()
    tasks = [await started(commit.submit((key, str(key)))) for key in range(8)]
    sender.release.set()
    await asyncio.gather(*tasks)
    assert [len(batch) for batch in sender.batches] == [1, 3, 3, 1]


async def test_each_caller_gets_its_own_outcome() -> None:
    sender = Sender()
    sender.fail_names = {"b"}
    commit = group(sender)
    sender.release.clear()
    tasks = [await started(commit.submit(request)) for request in [(0, "x"), (1, "a"), (2, "b"), (3, "c")]]
    sender.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[:2] == ["done x", "done a"]
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "b"
    assert outcomes[3] == "done c"


async def test_a_failed_batch_fails_its_callers_and_the_lane_goes_on() -> None:
    sender = Sender()
    sender.fail_whole = True
    commit = group(sender)
    with pytest.raises(RuntimeError, match="whole batch"):
        await commit.submit((1, "a"))
    sender.fail_whole = False
    assert await commit.submit((1, "b")) == "done b"


async def test_a_caller_that_gave_up_before_its_batch_left_is_not_sent() -> None:
    sender = Sender()
    commit = group(sender)
    sender.release.clear()
    first = await started(commit.submit((1, "a")))
    abandoned = await started(commit.submit((2, "b")))
    kept = await started(commit.submit((3, "c")))
    abandoned.cancel()
    sender.release.set()
    assert await asyncio.gather(first, kept) == ["done a", "done c"]
    assert sender.batches == [["a"], ["c"]]


async def test_lanes_send_in_parallel_and_a_key_always_uses_the_same_lane() -> None:
    sender = Sender()
    commit = group(sender, lanes=2)
    sender.release.clear()
    tasks = [await started(commit.submit(request)) for request in [(0, "even"), (1, "odd")]]
    assert sorted(map(tuple, sender.batches)) == [("even",), ("odd",)], "both lanes in flight at once"
    tasks += [await started(commit.submit(request)) for request in [(2, "even2"), (4, "even4"), (3, "odd3")]]
    sender.release.set()
    await asyncio.gather(*tasks)
    assert sorted(map(tuple, sender.batches[2:])) == [("even2", "even4"), ("odd3",)]


async def test_batch_sizes_are_reported() -> None:
    sender = Sender()
    commit = group(sender)
    sizes: list[int] = []
    commit.batch_sizes = sizes.append
    sender.release.clear()
    tasks = [await started(commit.submit((key, str(key)))) for key in range(4)]
    sender.release.set()
    await asyncio.gather(*tasks)
    assert sizes == [1, 3]


def test_a_group_commit_needs_a_lane_and_room() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Sender(), key=lambda request: request, lanes=0)
