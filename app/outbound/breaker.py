"""An asyncio circuit breaker for the gateway's outbound publishes, built on pybreaker.

pybreaker keeps the consecutive-failure count and the state storage and decides when to trip
and when a trial success closes the circuit. This wrapper adds what pybreaker lacks for an
event loop:

* ``async with breaker.guard():`` around an awaited call (pybreaker only records synchronous
  calls; its ``call_async`` needs Tornado);
* a limited number of concurrent half-open trial calls (pybreaker admits every caller);
* a reset timeout that grows on each failed trial (base, 2x, 4x, ... capped at
  ``max_reset_timeout_s``) and is jittered, measured on an injectable monotonic clock;
* an effective ``state`` that says ``half_open`` as soon as the timeout has elapsed
  (pybreaker only flips on the next call).

Put the publish deadline *inside* the guard::

    async with breaker.guard():
        async with asyncio.timeout(deadline_s):
            await publish(...)

``asyncio.timeout`` turns its cancellation into ``TimeoutError`` only where its block ends.
Inside the guard, that ``TimeoutError`` counts as a failure. With the timeout outside the
guard, the guard sees a ``CancelledError``, which counts as neither a failure nor a success,
so a stalled broker would never trip the breaker.

Use one breaker from one event loop. It is not safe to share between threads.
"""

from __future__ import annotations

import contextlib
import logging
import random as _random
import time
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

import pybreaker

__all__ = ["Breaker", "BreakerState", "CircuitOpenError", "StateListener"]

logger = logging.getLogger("breakwater.breaker")

# pybreaker measures its reset timeout with the wall clock (datetime.now), which can be neither
# injected nor trusted across clock steps. This module makes the open -> half-open decision on
# its own monotonic clock and never calls into pybreaker while pybreaker's state is open, so
# pybreaker's own timeout is set out of reach: if a bug ever did call in, pybreaker would refuse
# the call rather than quietly half-open the circuit on its own schedule.
_PYBREAKER_RESET_TIMEOUT_S = 10.0**9

# Keeps 2.0 ** n finite. Above this, the timeout is at its cap anyway.
_MAX_GROWTH_EXPONENT = 1000

_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitOpenError(Exception):
    """The breaker refused the call: it is open, or half-open with every trial slot taken.

    ``retry_after_s`` is how long until an open breaker admits a trial call. It is 0.0 when the
    breaker is half-open and its trial slots are busy, because it may close as soon as one of
    those trials ends.
    """

    def __init__(self, retry_after_s: float = 0.0, *, name: str = "outbound") -> None:
        super().__init__(f"circuit breaker {name!r} is open; retry in {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s
        self.name = name


StateListener = Callable[[BreakerState, BreakerState], None]


class _RecordedFailure(Exception):
    """Raised through pybreaker to record a failure.

    The caller's own exception is not raised through pybreaker. pybreaker would add its frames
    to the exception's traceback, and when the circuit trips it raises a CircuitBreakerError
    in its place.
    """


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _RecordedFailure


class _StateChangeHook(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = BreakerState(_FROM_PYBREAKER[old_state.name]) if old_state else BreakerState.closed
        self._breaker._on_transition(old, BreakerState(_FROM_PYBREAKER[new_state.name]))


class Breaker:
    """A circuit breaker for awaited calls. See the module docstring.

    ``max_reset_timeout_s`` caps the grown timeout. It defaults to 6 x ``reset_timeout_s``, so
    the timeouts run base, 2x, 4x, 6x, 6x, ... Jitter applies after the cap: each open period
    lasts the capped timeout times a factor in ``[1 - jitter, 1 + jitter]``, drawn from
    ``random``. The longest possible wait is therefore ``max_reset_timeout_s * (1 + jitter)``.
    Even the first open period is jittered, so gateway replicas that trip together on the same
    outage do not all send their first trial at the same moment.
    """

    def __init__(
        self,
        *,
        fail_max: int,
        reset_timeout_s: float,
        max_reset_timeout_s: float | None = None,
        trial_calls: int = 1,
        jitter: float = 0.2,
        excluded: tuple[type[BaseException], ...] = (),
        name: str = "outbound",
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if fail_max < 1:
            raise ValueError(f"fail_max must be >= 1, got {fail_max}")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s}")
        if max_reset_timeout_s is None:
            max_reset_timeout_s = 6 * reset_timeout_s
        if max_reset_timeout_s < reset_timeout_s:
            raise ValueError(
                f"max_reset_timeout_s ({max_reset_timeout_s}) must be >= "
                f"reset_timeout_s ({reset_timeout_s})"
            )
        if trial_calls < 1:
            raise ValueError(f"trial_calls must be >= 1, got {trial_calls}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")

        self.name = name
        self._base_timeout_s = float(reset_timeout_s)
        self._max_timeout_s = float(max_reset_timeout_s)
        self._trial_calls = trial_calls
        self._jitter = jitter
        self._excluded = excluded
        self._clock = clock
        self._random = random
        self._listeners: list[StateListener] = []

        # `excluded` is not passed to pybreaker, because pybreaker counts an excluded exception
        # as a success, which resets the failure count. Here such an exception counts as neither,
        # so it never reaches pybreaker.
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=_PYBREAKER_RESET_TIMEOUT_S,
            success_threshold=1,
            name=name,
            throw_new_error_on_trip=False,
            listeners=[_StateChangeHook(self)],
        )

        # The time the current open period ends, on self._clock. Only meaningful while open.
        self._open_until = 0.0
        self._open_for_s = 0.0
        self._failed_trials = 0
        self._trials_in_flight = 0
        # Goes up on every state change. A call remembers the epoch it was admitted in, and its
        # outcome is ignored if the state has changed since. For example, a publish admitted
        # while closed that fails after the circuit has gone half-open must not re-open it, and
        # a trial that succeeds after another trial has re-opened the circuit must not close it.
        self._epoch = 0
        self._last_failure: BaseException | None = None
        self._pending: list[tuple[BreakerState, BreakerState]] = []

    # -- public API -------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The effective state. An open breaker whose timeout has elapsed is half-open.

        Reading this property completes that transition, and listeners hear about it then.
        """
        self._observe_timeout()
        return self._stored_state()

    @property
    def retry_after_s(self) -> float:
        """Seconds until an open breaker admits a trial call. 0.0 when closed or half-open."""
        if self._stored_state() is not BreakerState.open:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def allows(self) -> bool:
        """Whether a call would be admitted right now. Changes nothing."""
        stored = self._stored_state()
        if stored is BreakerState.closed:
            return True
        if stored is BreakerState.open:
            # Once the timeout elapses, the next call moves the breaker to half-open, and the
            # trial-slot count starts again from zero.
            return self._clock() >= self._open_until
        return self._trials_in_flight < self._trial_calls

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block as one guarded call. See the module docstring.

        Raises CircuitOpenError before any await, and without running the block, when the call
        is not admitted. An exception from the block is re-raised as it is. It counts as a
        failure unless it is in `excluded` or is not an Exception (CancelledError,
        KeyboardInterrupt, GeneratorExit): those count as nothing. Leaving the block normally
        counts as a success.
        """
        # There is no await here, so admission cannot be interleaved with another coroutine's.
        state = self.state
        if state is BreakerState.open:
            raise CircuitOpenError(self.retry_after_s, name=self.name)
        is_trial = state is BreakerState.half_open
        if is_trial:
            if self._trials_in_flight >= self._trial_calls:
                raise CircuitOpenError(0.0, name=self.name)
            self._trials_in_flight += 1
        epoch = self._epoch
        try:
            yield
        except BaseException as exc:
            if epoch == self._epoch and self._counts_as_failure(exc):
                self._record_failure(exc)
            raise
        else:
            if epoch == self._epoch:
                self._record_success()
        finally:
            if is_trial and epoch == self._epoch:
                self._trials_in_flight -= 1

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure seen outside a guard, such as a dropped connection.

        Closed: it counts towards fail_max. Half-open, or open with the timeout elapsed: it
        re-opens the breaker with the next, longer timeout, as a failed trial would. Open
        before the timeout: it is ignored, so the wait is not extended. Exceptions a guard
        would not count (see guard) are ignored too.
        """
        if not self._counts_as_failure(exc):
            return
        if self.state is BreakerState.open:
            return
        self._record_failure(exc)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(old, new)`` once per state change.

        The open -> half_open change is reported when it is first observed: by a guard, by
        reading ``state`` or by record_failure. A listener runs after the change is complete,
        so it sees the new ``state`` and ``retry_after_s``. If a listener raises, the error is
        logged and does not affect the breaker.
        """
        self._listeners.append(listener)

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted by pybreaker. It keeps its value while open."""
        return self._cb.fail_counter

    # -- internals --------------------------------------------------------------------------

    def _stored_state(self) -> BreakerState:
        return BreakerState(_FROM_PYBREAKER[self._cb.current_state])

    def _counts_as_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception) and not isinstance(exc, self._excluded)

    def _observe_timeout(self) -> None:
        if self._stored_state() is BreakerState.open and self._clock() >= self._open_until:
            self._cb.half_open()
            self._flush()

    def _record_success(self) -> None:
        # pybreaker resets the failure count. If half-open, it closes, because
        # success_threshold is 1.
        self._cb.call(_succeed)
        self._flush()

    def _record_failure(self, exc: BaseException) -> None:
        self._last_failure = exc
        # pybreaker counts the failure. When closed, it trips at fail_max. When half-open, it
        # re-opens. It holds its RLock only for this synchronous call, never across an await.
        # (Its calling() context manager does not hold the lock across the block either: call()
        # returns an unstarted generator, and the lock is released before the block runs.)
        with contextlib.suppress(_RecordedFailure):
            self._cb.call(_fail)
        self._flush()

    def _next_open_period_s(self) -> tuple[float, float]:
        exponent = min(self._failed_trials, _MAX_GROWTH_EXPONENT)
        nominal = min(self._base_timeout_s * 2.0**exponent, self._max_timeout_s)
        factor = 1.0 + self._jitter * (2.0 * self._random() - 1.0)
        return nominal, nominal * factor

    def _on_transition(self, old: BreakerState, new: BreakerState) -> None:
        # pybreaker calls this before it has updated its state storage (in open(),
        # `self.state = self._state_storage.state = ...` assigns left to right), so a listener
        # that read `state` from here would get the old state. Only bookkeeping and logging,
        # which do not read pybreaker's state, happen here. Listeners wait for _flush(), which
        # runs once pybreaker has finished.
        if old is new:
            # pybreaker notifies on every assignment to its state, even one to the same state
            # (open() while already open). This module never does that, but if it ever happened
            # it would not be a state change.
            return
        self._epoch += 1
        self._trials_in_flight = 0
        if new is BreakerState.open:
            if old is BreakerState.half_open:
                self._failed_trials += 1
            nominal, self._open_for_s = self._next_open_period_s()
            self._open_until = self._clock() + self._open_for_s
            if old is BreakerState.half_open:
                logger.warning(
                    "circuit breaker %r re-opened: trial call failed (%r); "
                    "failed trials in a row: %d; next trial in %.2fs (nominal %.2fs, cap %.2fs)",
                    self.name,
                    self._last_failure,
                    self._failed_trials,
                    self._open_for_s,
                    nominal,
                    self._max_timeout_s,
                )
            else:
                logger.warning(
                    "circuit breaker %r opened after %d consecutive failures (last: %r); "
                    "next trial in %.2fs",
                    self.name,
                    self._cb.fail_counter,
                    self._last_failure,
                    self._open_for_s,
                )
        elif new is BreakerState.half_open:
            logger.info(
                "circuit breaker %r half-open after %.2fs: admitting up to %d trial call(s)",
                self.name,
                self._open_for_s,
                self._trial_calls,
            )
        else:
            logger.info(
                "circuit breaker %r closed: trial call succeeded after %d failed trial(s); "
                "reset timeout back to %.2fs",
                self.name,
                self._failed_trials,
                self._base_timeout_s,
            )
            self._failed_trials = 0
        self._pending.append((old, new))

    def _flush(self) -> None:
        # A listener may itself cause a state change, which adds to _pending while this loop
        # runs. Popping from the front keeps the notifications in order.
        while self._pending:
            old, new = self._pending.pop(0)
            for listener in list(self._listeners):
                try:
                    listener(old, new)
                except Exception:
                    logger.exception(
                        "circuit breaker %r: state listener %r failed on %s -> %s",
                        self.name,
                        listener,
                        old,
                        new,
                    )
