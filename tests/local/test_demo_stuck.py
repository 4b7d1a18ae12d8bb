"""A demo stuck where no timeout of its own reaches ends anyway, naming where each of its tasks was waiting
(once, under heavy load, a demo's main task waited with no timer pending, past its own --timeout)."""

from __future__ import annotations

import asyncio

import pytest

from local.demo import DemoStuckError, within


async def never_ends(gate: asyncio.Event) -> None:
    await gate.wait()


async def waits_on_a_helper(gate: asyncio.Event) -> str:
    helper = asyncio.create_task(never_ends(gate), name="helper")
    await helper
    return "done"


async def test_work_that_never_ends_fails_naming_where_every_task_waits() -> None:
    # Given work stuck on an event nobody sets, behind a task of its own
    gate = asyncio.Event()
    # When it runs within a short limit
    with pytest.raises(DemoStuckError) as stuck:
        await within(0.2, waits_on_a_helper(gate), "the stuck work")
    # Then it ends, and the message names the limit and the frames each task was suspended in at that moment
    message = str(stuck.value)
    assert "the stuck work did not end within 0.2 s" in message
    assert "task helper:" in message
    assert "in waits_on_a_helper" in message
    assert "in never_ends" in message


async def test_work_that_ends_in_time_returns_its_result_and_leaves_no_timer() -> None:
    # Given work that ends at once
    gate = asyncio.Event()
    gate.set()
    # When it runs within a limit
    result = await within(5.0, waits_on_a_helper(gate), "the work")
    # Then its result comes back, and no timer of the limit is left to fire (cancelled ones wait to be dropped)
    assert result == "done"
    scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
    assert all(timer.cancelled() for timer in scheduled)


async def test_a_timeout_of_the_work_itself_is_not_reported_as_stuck() -> None:
    # Given work that raises TimeoutError of its own, well within the limit
    async def times_out() -> None:
        raise TimeoutError("the endpoint did not answer")

    # Then that TimeoutError comes through as it is
    with pytest.raises(TimeoutError, match="the endpoint did not answer"):
        await within(5.0, times_out(), "the work")
