"""Stepping a coroutine by hand (`api.event_stream.run_until_suspended`), as each stream write does."""

from __future__ import annotations

import asyncio

from agenthost.api.event_stream import run_until_suspended


async def test_a_coroutine_that_does_not_suspend_finishes_in_the_caller() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert run_until_suspended(write()) is None
    assert done == ["written"]  # before the caller went on: no task, no loop turn


async def test_a_coroutine_that_suspends_is_finished_by_a_task_with_what_it_awaited() -> None:
    steps: list[str] = []
    writable = asyncio.Event()

    async def write() -> None:
        steps.append("first part")
        assert await writable.wait() is True
        await asyncio.sleep(0)  # a bare yield on the way
        steps.append("rest")

    task = run_until_suspended(write())
    assert task is not None and steps == ["first part"]
    await asyncio.sleep(0.01)
    assert not task.done()
    writable.set()
    await task
    assert steps == ["first part", "rest"]


async def test_an_error_after_the_suspension_is_the_task_s_and_one_before_is_the_caller_s() -> None:
    gate = asyncio.Event()

    async def broken_later() -> None:
        await gate.wait()
        raise OSError("the connection broke")

    task = run_until_suspended(broken_later())
    assert task is not None
    gate.set()
    await asyncio.wait((task,))
    assert isinstance(task.exception(), OSError)

    async def broken_at_once() -> None:
        raise ValueError("bad message")

    try:
        run_until_suspended(broken_at_once())
    except ValueError as exc:
        assert str(exc) == "bad message"
    else:
        raise AssertionError("the error did not reach the caller")


async def test_a_write_cancelled_before_its_task_ran_is_closed_and_leaves_no_waiter() -> None:
    cleaned: list[str] = []
    writable = asyncio.Event()

    async def write() -> None:
        try:
            await writable.wait()
        finally:
            cleaned.append("closed")

    task = run_until_suspended(write())
    assert task is not None
    task.cancel()  # in the same loop pass: the task never took a step
    await asyncio.wait((task,))
    await asyncio.sleep(0)  # done callbacks run on the next turn
    assert task.cancelled()
    assert cleaned == ["closed"]
    assert not writable._waiters  # type: ignore[attr-defined]  # the abandoned wait left nothing behind
