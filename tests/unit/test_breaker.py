"""Behaviour of app.outbound.breaker.Breaker, driven by a fake clock (nothing here sleeps)."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

import pytest

from app.outbound.breaker import Breaker, BreakerState, CircuitOpenError

BASE = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    """Stands in for a broker failure."""


class CallerMistake(Exception):
    """Stands in for an error that is the caller's fault."""


def make(**overrides: Any) -> tuple[Breaker, FakeClock]:
    clock = FakeClock()
    kwargs: dict[str, Any] = {
        "fail_max": 3,
        "reset_timeout_s": BASE,
        "excluded": (CallerMistake,),
        "clock": clock,
        # 0.5 is the centre of the jitter range: a factor of exactly 1.
        "random": lambda: 0.5,
    }
    kwargs.update(overrides)
    return Breaker(**kwargs), clock


async def fail(breaker: Breaker, exc: BaseException | None = None) -> None:
    exc = exc if exc is not None else Boom("broker down")
    with pytest.raises(type(exc)):
        async with breaker.guard():
            raise exc


async def succeed(breaker: Breaker) -> None:
    async with breaker.guard():
        pass


async def trip(breaker: Breaker) -> None:
    for _ in range(breaker.fail_counter, 3):
        await fail(breaker)
    assert state_of(breaker) is BreakerState.open


def state_of(breaker: Breaker) -> BreakerState:
    # A plain call, so that mypy does not carry the narrowing of one `assert breaker.state is X`
    # over to the next assert.
    return breaker.state


def recorder(breaker: Breaker) -> list[tuple[BreakerState, BreakerState]]:
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker.add_listener(lambda old, new: changes.append((old, new)))
    return changes


async def blocked_in_guard(breaker: Breaker, release: asyncio.Event) -> asyncio.Task[None]:
    """A call that has been admitted and is now waiting inside the guard."""

    async def call() -> None:
        async with breaker.guard():
            await release.wait()

    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    assert not task.done()
    return task


# -- counting ---------------------------------------------------------------------------------


async def test_opens_after_fail_max_consecutive_failures() -> None:
    breaker, _ = make()
    await fail(breaker)
    await fail(breaker)
    assert state_of(breaker) is BreakerState.closed
    assert breaker.fail_counter == 2

    await fail(breaker)

    assert state_of(breaker) is BreakerState.open
    assert breaker.fail_counter == 3
    assert not breaker.allows()


async def test_a_success_between_failures_resets_the_count() -> None:
    breaker, _ = make()
    await fail(breaker)
    await fail(breaker)
    await succeed(breaker)
    assert breaker.fail_counter == 0

    await fail(breaker)
    await fail(breaker)

    assert state_of(breaker) is BreakerState.closed
    assert breaker.fail_counter == 2


async def test_a_failure_is_reraised_unchanged_even_when_it_trips_the_breaker() -> None:
    breaker, _ = make()
    for _ in range(3):
        exc = Boom("broker down")
        with pytest.raises(Boom) as info:
            async with breaker.guard():
                raise exc
        assert info.value is exc
        frames = [frame.filename for frame in traceback.extract_tb(info.value.__traceback__)]
        assert not any("pybreaker" in filename for filename in frames), frames
    assert state_of(breaker) is BreakerState.open


async def test_excluded_exceptions_pass_through_and_count_as_neither_failure_nor_success() -> None:
    breaker, _ = make()
    await fail(breaker)
    await fail(breaker)

    mistake = CallerMistake("bad payload")
    with pytest.raises(CallerMistake) as info:
        async with breaker.guard():
            raise mistake
    assert info.value is mistake
    # Not a failure (3 would have tripped it), and not a success (that would reset it to 0).
    assert breaker.fail_counter == 2
    assert state_of(breaker) is BreakerState.closed

    await fail(breaker)
    assert state_of(breaker) is BreakerState.open


async def test_cancelled_error_inside_a_guard_counts_as_neither_failure_nor_success() -> None:
    breaker, _ = make()
    await fail(breaker)
    await fail(breaker)

    task = await blocked_in_guard(breaker, asyncio.Event())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert breaker.fail_counter == 2
    assert state_of(breaker) is BreakerState.closed
    await fail(breaker)
    assert state_of(breaker) is BreakerState.open


# -- open -------------------------------------------------------------------------------------


async def test_while_open_guard_raises_before_any_await_and_never_runs_the_body() -> None:
    breaker, clock = make()
    await trip(breaker)
    clock.advance(4)

    # A single send() must finish the whole of __aenter__. Had guard() awaited anything that
    # suspends, send() would return instead of raising.
    entering = breaker.guard().__aenter__()
    with pytest.raises(CircuitOpenError) as info:
        entering.send(None)
    assert info.value.retry_after_s == pytest.approx(6.0)

    ran = False
    with pytest.raises(CircuitOpenError):
        async with breaker.guard():
            ran = True
    assert not ran


async def test_retry_after_s_counts_down_while_open_and_is_zero_otherwise() -> None:
    breaker, clock = make()
    assert breaker.retry_after_s == 0.0

    await trip(breaker)
    assert breaker.retry_after_s == pytest.approx(BASE)
    clock.advance(4)
    assert breaker.retry_after_s == pytest.approx(6.0)
    with pytest.raises(CircuitOpenError) as info:
        async with breaker.guard():
            pass
    assert info.value.retry_after_s == pytest.approx(6.0)

    clock.advance(6)
    assert breaker.retry_after_s == 0.0
    assert state_of(breaker) is BreakerState.half_open
    assert breaker.retry_after_s == 0.0


async def test_state_reports_half_open_once_the_timeout_has_elapsed_without_any_call() -> None:
    breaker, clock = make()
    changes = recorder(breaker)
    await trip(breaker)

    clock.advance(BASE - 0.001)
    assert state_of(breaker) is BreakerState.open
    assert not breaker.allows()

    clock.advance(0.001)
    assert breaker.allows()
    assert state_of(breaker) is BreakerState.half_open
    assert changes == [
        (BreakerState.closed, BreakerState.open),
        (BreakerState.open, BreakerState.half_open),
    ]


async def test_allows_and_retry_after_s_have_no_side_effects() -> None:
    breaker, clock = make()
    changes = recorder(breaker)
    await trip(breaker)
    clock.advance(BASE)

    for _ in range(3):
        assert breaker.allows()
        assert breaker.retry_after_s == 0.0
    assert changes == [(BreakerState.closed, BreakerState.open)]

    assert state_of(breaker) is BreakerState.half_open
    assert changes[-1] == (BreakerState.open, BreakerState.half_open)


# -- half-open --------------------------------------------------------------------------------


@pytest.mark.parametrize("trial_calls", [1, 3])
async def test_half_open_admits_exactly_trial_calls_of_20_concurrent_callers(
    trial_calls: int,
) -> None:
    breaker, clock = make(trial_calls=trial_calls)
    await trip(breaker)
    clock.advance(BASE)
    release = asyncio.Event()
    inside = 0

    async def caller() -> None:
        nonlocal inside
        async with breaker.guard():
            inside += 1
            await release.wait()

    tasks = [asyncio.create_task(caller()) for _ in range(20)]
    await asyncio.sleep(0)  # every task runs up to its first suspension

    rejected = [task for task in tasks if task.done()]
    assert inside == trial_calls
    assert len(rejected) == 20 - trial_calls
    for task in rejected:
        error = task.exception()
        assert isinstance(error, CircuitOpenError)
        assert error.retry_after_s == 0.0
    assert state_of(breaker) is BreakerState.half_open
    assert not breaker.allows()

    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert state_of(breaker) is BreakerState.closed
    assert breaker.allows()


async def test_trial_success_closes_and_resets_the_grown_timeout_to_the_base() -> None:
    breaker, clock = make()
    await trip(breaker)
    clock.advance(BASE)
    await fail(breaker)  # failed trial: the next wait is 2 x BASE
    clock.advance(2 * BASE)

    await succeed(breaker)

    assert state_of(breaker) is BreakerState.closed
    assert breaker.fail_counter == 0
    await trip(breaker)
    assert breaker.retry_after_s == pytest.approx(BASE)


async def test_trial_failure_reopens_with_a_doubling_timeout_up_to_the_cap() -> None:
    breaker, clock = make(max_reset_timeout_s=35.0)
    await trip(breaker)
    waits = [breaker.retry_after_s]
    for _ in range(3):
        clock.advance(waits[-1] - 0.001)
        assert state_of(breaker) is BreakerState.open
        clock.advance(0.001)
        assert state_of(breaker) is BreakerState.half_open
        await fail(breaker)
        assert state_of(breaker) is BreakerState.open
        waits.append(breaker.retry_after_s)

    assert waits == pytest.approx([10.0, 20.0, 35.0, 35.0])


async def test_default_cap_is_six_times_the_base_timeout() -> None:
    breaker, clock = make()
    await trip(breaker)
    waits = [breaker.retry_after_s]
    for _ in range(4):
        clock.advance(waits[-1])
        await fail(breaker)
        waits.append(breaker.retry_after_s)

    assert waits == pytest.approx([10.0, 20.0, 40.0, 60.0, 60.0])


@pytest.mark.parametrize(("random_value", "factor"), [(0.0, 0.8), (1.0, 1.2), (0.5, 1.0)])
async def test_jitter_scales_every_timeout_within_plus_or_minus_the_fraction(
    random_value: float, factor: float
) -> None:
    breaker, clock = make(jitter=0.2, max_reset_timeout_s=30.0, random=lambda: random_value)
    await trip(breaker)
    waits = [breaker.retry_after_s]
    for _ in range(2):
        clock.advance(waits[-1])
        await fail(breaker)
        waits.append(breaker.retry_after_s)

    # The cap applies to the nominal timeout (10, 20, then 40 capped to 30) before jitter.
    assert waits == pytest.approx([10.0 * factor, 20.0 * factor, 30.0 * factor])


@pytest.mark.parametrize(
    "neutral",
    [CallerMistake("bad payload"), asyncio.CancelledError()],
    ids=["excluded", "cancelled"],
)
async def test_a_neutral_trial_outcome_frees_its_slot_and_leaves_the_breaker_half_open(
    neutral: BaseException,
) -> None:
    breaker, clock = make()
    await trip(breaker)
    clock.advance(BASE)

    with pytest.raises(type(neutral)):
        async with breaker.guard():
            raise neutral

    assert state_of(breaker) is BreakerState.half_open
    assert breaker.allows()
    await succeed(breaker)
    assert state_of(breaker) is BreakerState.closed


@pytest.mark.parametrize("late_outcome", ["failure", "success"])
async def test_the_outcome_of_a_call_admitted_before_a_state_change_is_ignored(
    late_outcome: str,
) -> None:
    breaker, clock = make()
    release = asyncio.Event()
    straggler_raises = late_outcome == "failure"

    async def straggler() -> None:
        async with breaker.guard():
            await release.wait()
            if straggler_raises:
                raise Boom("late")

    task = asyncio.create_task(straggler())
    await asyncio.sleep(0)
    await trip(breaker)
    clock.advance(BASE)
    assert state_of(breaker) is BreakerState.half_open

    release.set()
    await asyncio.gather(task, return_exceptions=True)

    # A late failure must not re-open it; a late success is no evidence that it has recovered.
    assert state_of(breaker) is BreakerState.half_open
    assert breaker.allows()


# -- record_failure ---------------------------------------------------------------------------


async def test_record_failure_counts_towards_fail_max_while_closed() -> None:
    breaker, _ = make()
    await fail(breaker)
    breaker.record_failure(ConnectionResetError("dropped"))
    assert breaker.fail_counter == 2
    breaker.record_failure(CallerMistake("ignored"))
    assert breaker.fail_counter == 2

    breaker.record_failure(ConnectionResetError("dropped"))

    assert state_of(breaker) is BreakerState.open


async def test_record_failure_is_ignored_while_open_and_reopens_longer_when_half_open() -> None:
    breaker, clock = make()
    changes = recorder(breaker)
    for _ in range(3):
        breaker.record_failure(ConnectionResetError("dropped"))
    clock.advance(4)

    breaker.record_failure(ConnectionResetError("dropped"))
    assert breaker.retry_after_s == pytest.approx(6.0)
    assert changes == [(BreakerState.closed, BreakerState.open)]

    clock.advance(6)
    breaker.record_failure(ConnectionResetError("dropped"))

    assert state_of(breaker) is BreakerState.open
    assert breaker.retry_after_s == pytest.approx(2 * BASE)
    assert changes[1:] == [
        (BreakerState.open, BreakerState.half_open),
        (BreakerState.half_open, BreakerState.open),
    ]


# -- listeners and logs -----------------------------------------------------------------------


async def test_listeners_are_called_once_per_state_change_in_order() -> None:
    breaker, clock = make()
    calls: list[tuple[str, BreakerState, BreakerState]] = []
    breaker.add_listener(lambda old, new: calls.append(("first", old, new)))
    breaker.add_listener(lambda old, new: calls.append(("second", old, new)))

    await trip(breaker)
    for _ in range(3):
        assert state_of(breaker) is BreakerState.open
    clock.advance(BASE)
    for _ in range(3):
        assert state_of(breaker) is BreakerState.half_open
    await fail(breaker)
    clock.advance(2 * BASE)
    await succeed(breaker)
    await succeed(breaker)

    closed, open_, half_open = BreakerState.closed, BreakerState.open, BreakerState.half_open
    expected = [
        (closed, open_),
        (open_, half_open),
        (half_open, open_),
        (open_, half_open),
        (half_open, closed),
    ]
    assert calls == [(who, *change) for change in expected for who in ("first", "second")]


async def test_a_listener_sees_the_new_state() -> None:
    breaker, _ = make()
    seen: list[tuple[BreakerState, float]] = []
    breaker.add_listener(lambda old, new: seen.append((breaker.state, breaker.retry_after_s)))

    await trip(breaker)

    assert len(seen) == 1
    assert seen[0][0] is BreakerState.open
    assert seen[0][1] == pytest.approx(BASE)


async def test_a_failing_listener_is_logged_and_does_not_disturb_the_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker, _ = make()

    def broken(old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    changes = recorder(breaker)

    await trip(breaker)  # fail() asserts that the guard still raised Boom

    assert state_of(breaker) is BreakerState.open
    assert changes == [(BreakerState.closed, BreakerState.open)]
    assert any(
        record.levelno == logging.ERROR and "listener" in record.getMessage()
        for record in caplog.records
    )


async def test_each_state_change_is_logged_once_with_its_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="breakwater.breaker")
    breaker, clock = make()

    await trip(breaker)
    clock.advance(BASE)
    await fail(breaker)
    clock.advance(2 * BASE)
    await succeed(breaker)

    records = [r for r in caplog.records if r.name == "breakwater.breaker"]
    levels = [r.levelno for r in records]
    assert levels == [logging.WARNING, logging.INFO, logging.WARNING, logging.INFO, logging.INFO]
    messages = [r.getMessage() for r in records]
    assert "3 consecutive failures" in messages[0]
    assert "10.00s" in messages[0]
    assert "20.00s" in messages[2]
    assert "closed" in messages[4]
    assert "10.00s" in messages[4]


# -- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"fail_max": 0},
        {"reset_timeout_s": -1.0},
        {"max_reset_timeout_s": 5.0},
        {"trial_calls": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_invalid_settings_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        make(**overrides)


def test_circuit_open_error_carries_retry_after() -> None:
    error = CircuitOpenError(2.5, name="outbound")
    assert error.retry_after_s == 2.5
    assert "outbound" in str(error)
