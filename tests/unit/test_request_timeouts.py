"""Request time limits without a timer each: a request past its limit is cut off, nothing else is.

No assertion here is about durations: a request that never gets an answer must end (cut off), and one
answered long before its limit must be untouched, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dispatcher.adapters.request_timeouts import RequestTimedOutError, RequestTimeouts

SHORT_LIMIT_SECONDS = 0.01
LONG_LIMIT_SECONDS = 600.0
HANG_GUARD_SECONDS = 30  # only a limit that never fires reaches it


async def never_answered() -> None:
    await asyncio.get_running_loop().create_future()


async def unanswered_request(timeouts: RequestTimeouts) -> None:
    with timeouts.limit(SHORT_LIMIT_SECONDS):
        await never_answered()


def test_a_request_that_is_never_answered_is_cut_off() -> None:
    # Given a request whose answer never comes
    timeouts = RequestTimeouts(sweep_interval_seconds=0.005)

    # When it runs, Then its limit ends it, as a timeout and not as a cancellation
    with pytest.raises(RequestTimedOutError):
        asyncio.run(unanswered_request(timeouts))


def test_a_request_answered_in_time_keeps_its_answer_and_its_task_is_not_cancelled() -> None:
    # Given requests answered at once under a long limit
    timeouts = RequestTimeouts()

    async def requests() -> tuple[list[str], int]:
        async def one(answer: str) -> str:
            with timeouts.limit(LONG_LIMIT_SECONDS):
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # the task goes on after the request: no cancellation waits for it
            return answer

        tasks = [asyncio.create_task(one(f"answer {n}")) for n in range(50)]
        answers = await asyncio.gather(*tasks)
        return answers, sum(task.cancelling() for task in tasks)

    # When they run
    answers, cancellations = asyncio.run(requests())

    # Then each keeps its answer and no task carries a cancellation
    assert answers == [f"answer {n}" for n in range(50)]
    assert cancellations == 0


def test_only_the_requests_past_their_limit_are_cut_off() -> None:
    # Given one request that is never answered and, in flight beside it, one answered only after the first
    # was cut off
    timeouts = RequestTimeouts(sweep_interval_seconds=0.005)

    async def requests() -> tuple[str | BaseException, str | BaseException]:
        first_cut_off = asyncio.Event()

        async def hanging() -> str:
            try:
                with timeouts.limit(SHORT_LIMIT_SECONDS):
                    await never_answered()
            finally:
                first_cut_off.set()
            return "never"

        async def patient() -> str:
            with timeouts.limit(LONG_LIMIT_SECONDS):
                await first_cut_off.wait()
            return "answered"

        return await asyncio.gather(hanging(), patient(), return_exceptions=True)

    # When both run
    hanging_result, patient_result = asyncio.run(requests())

    # Then the first is cut off and the second, still inside its limit, gets its answer
    assert isinstance(hanging_result, RequestTimedOutError)
    assert patient_result == "answered"


def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    # Given a request under a long limit, cancelled by its caller while it waits
    timeouts = RequestTimeouts()

    async def cancelled_from_outside() -> None:
        async def request() -> None:
            with timeouts.limit(LONG_LIMIT_SECONDS):
                await never_answered()

        task = asyncio.create_task(request())
        await asyncio.sleep(0)
        task.cancel()
        await task

    # When it runs, Then the caller's cancellation is what ends it, not a timeout
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_from_outside())


def test_a_cut_off_swallowed_inside_the_request_leaves_no_cancellation_behind() -> None:
    # Given a request whose code swallows the cancellation (as a careless library might) and ends normally
    timeouts = RequestTimeouts(sweep_interval_seconds=0.005)

    async def swallowing() -> tuple[str, int]:
        with timeouts.limit(SHORT_LIMIT_SECONDS), contextlib.suppress(asyncio.CancelledError):
            await never_answered()
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        await asyncio.sleep(0)  # would raise CancelledError if the limit's cancellation were still pending
        return "went on", cancelling

    # When it runs, Then the task goes on with no cancellation left
    assert asyncio.run(swallowing()) == ("went on", 0)


def test_limits_keep_working_on_a_second_event_loop() -> None:
    # Given one set of limits whose first loop stopped with its sweep still pending (the cut-off request ended
    # before the next sweep came)
    timeouts = RequestTimeouts(sweep_interval_seconds=0.005)
    with pytest.raises(RequestTimedOutError):
        asyncio.run(unanswered_request(timeouts))

    # When a request on a new loop is never answered either, Then its limit still ends it
    with pytest.raises(RequestTimedOutError):
        asyncio.run(asyncio.wait_for(unanswered_request(timeouts), timeout=HANG_GUARD_SECONDS))
