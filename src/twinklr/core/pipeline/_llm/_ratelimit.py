"""A process-wide rate limiter for LLM calls: requests and tokens per minute.

Exact sliding window: a request admitted at time ``t`` occupies the window ``[t, t +
60 s)``, and no such window ever holds more than the limits. Waiters are served strictly
first come, first served (a big request is never overtaken by small ones), and a
cancelled waiter gives its place back. Time is Trio's clock, so limits are exact under
``autojump_clock``. A limiter belongs to one Trio run (one event loop), shared by every
stage and every pipeline run inside it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import sniffio
import trio

from .._base._loops import run_in_trio
from .._values._context import current_context, work_metrics


@attrs.frozen(kw_only=True)
class RateLimiterStatistics:
    """A limiter's state and history at one moment."""

    name: str
    """The limiter's name."""
    requests_per_minute: int | None
    """The request limit (None: none)."""
    tokens_per_minute: float | None
    """The token limit (None: none)."""
    requests_in_window: int
    """Requests admitted in the last minute."""
    tokens_in_window: float
    """Tokens admitted in the last minute."""
    waiting: int
    """Requests waiting for their turn now."""
    admitted: int
    """Requests admitted since the limiter was made."""
    tokens_admitted: float
    """Tokens admitted since the limiter was made."""
    total_wait_s: float
    """Time all admitted requests spent waiting, summed."""
    max_wait_s: float
    """The longest any admitted request waited."""


class _Waiter:
    __slots__ = ("tokens", "turn")

    def __init__(self, tokens: float) -> None:
        self.tokens = tokens
        self.turn = trio.Event()


def _check_limit(name: str, value: float | None) -> None:
    if value is not None and (
        not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < math.inf
    ):
        msg = f"RateLimiter {name} must be a finite number > 0 or None, got {value!r}"
        raise ValueError(msg)


class RateLimiter:
    """Limits requests and tokens per minute; ``async with limiter.acquire(tokens=n)``
    waits for capacity, in arrival order.

    Args:
        requests_per_minute: Requests admitted per window; None: not limited.
        tokens_per_minute: Tokens admitted per window; None: not limited.
        name: Shown in its statistics and metrics.
        window_s: The window's length in seconds (60: "per minute").

    Raises:
        ValueError: A limit that is not a positive, finite number (or None).
    """

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: float | None = None,
        *,
        name: str = "default",
        window_s: float = 60.0,
    ) -> None:
        if requests_per_minute is not None and (
            not isinstance(requests_per_minute, int)
            or isinstance(requests_per_minute, bool)
            or requests_per_minute < 1
        ):
            msg = (
                "RateLimiter requests_per_minute must be an int >= 1 or None, "
                f"got {requests_per_minute!r}"
            )
            raise ValueError(msg)
        _check_limit("tokens_per_minute", tokens_per_minute)
        _check_limit("window_s", window_s)
        self.name = name
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window_s = window_s
        self._log: deque[tuple[float, float]] = deque()  # (admitted at, tokens)
        self._tokens_in_window = 0.0
        self._queue: deque[_Waiter] = deque()
        self._admitted = 0
        self._tokens_admitted = 0.0
        self._total_wait = 0.0
        self._max_wait = 0.0
        self._paused_until = -math.inf  # nothing is admitted before (see `pause`)
        self._run: trio.lowlevel.TrioToken | None = None  # the run the window's times are in
        self._offset = 0.0  # that run's clock minus the monotonic clock

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r}, name={self.name!r})"
        )

    @asynccontextmanager
    async def acquire(self, tokens: float = 1) -> AsyncIterator[float]:
        """Wait until a request of ``tokens`` tokens fits, then enter; yields the time
        waited in seconds. The request counts from the moment it is admitted."""
        yield await self.wait_for_capacity(tokens)

    async def wait_for_capacity(self, tokens: float = 1) -> float:
        """Wait until a request of ``tokens`` tokens fits and admit it; return the time
        waited in seconds.

        Works from Trio and from an asyncio stage of an `aio` run (the wait happens in
        the run's Trio loop, so all runs on one loop share the limiter).

        Raises ``ValueError`` for a request bigger than ``tokens_per_minute`` (it could
        never fit). Cancellation while waiting admits nothing and frees the place.
        """
        if sniffio.current_async_library() == "asyncio":
            waited: float = await run_in_trio(self.wait_for_capacity, tokens)
            return waited
        self._check_amount("tokens must be a finite number", tokens)
        if self.tokens_per_minute is not None and tokens > self.tokens_per_minute:
            msg = (
                f"RateLimiter {self.name!r}: a request of {tokens} tokens can never fit "
                f"in tokens_per_minute={self.tokens_per_minute}"
            )
            raise ValueError(msg)
        await trio.lowlevel.checkpoint_if_cancelled()
        self._follow_the_clock()
        start = trio.current_time()
        waiter = _Waiter(tokens)
        self._queue.append(waiter)
        try:
            if self._queue[0] is not waiter:
                await waiter.turn.wait()  # the waiter before us was admitted or left
            while True:
                now = trio.current_time()
                ready_at = self._ready_at(tokens, now)
                if ready_at <= now:
                    break
                await trio.sleep_until(ready_at)
        except BaseException:
            self._leave(waiter)  # cancelled: give the place back, wake the next
            raise
        self._admit(now, tokens)
        self._leave(waiter)
        waited = now - start
        self._total_wait += waited
        self._max_wait = max(self._max_wait, waited)
        context = current_context.get()
        if context is not None:
            with work_metrics():  # a cache hit waits for nothing: never replayed
                context.increment_metric("rate_limit_requests")
                context.increment_metric("rate_limit_wait_ms", waited * 1000)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return waited

    def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` from now (a provider's 429 asked every caller
        to wait): every request waiting, and every one that comes meanwhile, waits too,
        in its turn. A longer pause already going on is kept. Called from Trio, or from
        an asyncio stage of an `aio` run (on the loop's thread)."""
        self._check_amount("pause needs seconds", seconds)
        self._follow_the_clock()
        # (a waiter asleep until its turn wakes then, and sees the pause)
        self._paused_until = max(self._paused_until, trio.current_time() + seconds)

    def settle(self, estimated: float, actual: float) -> None:
        """Count ``actual`` tokens, not the ``estimated`` ones, for a request admitted
        with that estimate (its answer reports what it used): the window then holds what
        was really spent. A request already out of the window is left alone; ``actual``
        beyond the limit is counted as it is (it was spent)."""
        self._check_amount("settle needs tokens", actual)
        log = self._log
        for position in range(len(log) - 1, -1, -1):  # the latest such request
            admitted_at, used = log[position]
            if used == estimated:
                log[position] = (admitted_at, actual)
                self._tokens_in_window += actual - estimated
                self._tokens_admitted += actual - estimated
                return

    @property
    def paused_until(self) -> float | None:
        """When the current pause ends (Trio's clock), or None."""
        try:
            self._follow_the_clock()
            now = trio.current_time()
        except RuntimeError:  # not inside a Trio run
            return None
        return self._paused_until if self._paused_until > now else None

    def _check_amount(self, what: str, value: object) -> None:
        """ValueError saying ``what`` unless ``value`` is a finite number >= 0 (NaN is
        not: it would switch a limit off)."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and 0 <= value < math.inf):  # type: ignore[operator]
            msg = f"RateLimiter {self.name!r}: {what} >= 0, got {value!r}"
            raise ValueError(msg)

    def statistics(self) -> RateLimiterStatistics:
        """The limiter's state and history now (callable outside Trio too: then the
        window is as of the last request)."""
        try:
            self._follow_the_clock()
        except RuntimeError:  # not inside a Trio run
            pass
        else:
            self._expire(trio.current_time())
        return RateLimiterStatistics(
            name=self.name,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            requests_in_window=len(self._log),
            tokens_in_window=self._tokens_in_window,
            waiting=len(self._queue),
            admitted=self._admitted,
            tokens_admitted=self._tokens_admitted,
            total_wait_s=self._total_wait,
            max_wait_s=self._max_wait,
        )

    # -- the window ---------------------------------------------------------------------

    def _follow_the_clock(self) -> None:
        """Carry the window over to this Trio run's clock when the limiter was last used
        in another run (each run's clock has its own origin): what was admitted a
        second ago still counts, in every run that shares the limiter."""
        token = trio.lowlevel.current_trio_token()
        offset = trio.current_time() - time.monotonic()
        if self._run is not token:
            if self._run is not None:
                shift = offset - self._offset
                self._log = deque((admitted + shift, used) for admitted, used in self._log)
                self._paused_until += shift
            self._run = token
        self._offset = offset

    def _expire(self, now: float) -> None:
        log, window = self._log, self.window_s
        while log and log[0][0] + window <= now:
            self._tokens_in_window -= log.popleft()[1]
        if not log:
            self._tokens_in_window = 0.0  # no float drift left behind

    def _ready_at(self, tokens: float, now: float) -> float:
        """The earliest time a request of ``tokens`` fits (``now`` if it fits now)."""
        self._expire(now)
        log, window = self._log, self.window_s
        ready = max(now, self._paused_until)
        rpm = self.requests_per_minute
        if rpm is not None and len(log) + 1 > rpm:
            # the oldest entries must leave the window until one more request fits
            must_leave = len(log) + 1 - rpm
            ready = max(ready, log[must_leave - 1][0] + window)
        tpm = self.tokens_per_minute
        if tpm is not None and self._tokens_in_window + tokens > tpm:
            excess = self._tokens_in_window + tokens - tpm
            for admitted_at, used in log:
                excess -= used
                if excess <= 0:
                    ready = max(ready, admitted_at + window)
                    break
        return ready

    def _admit(self, now: float, tokens: float) -> None:
        self._log.append((now, tokens))
        self._tokens_in_window += tokens
        self._admitted += 1
        self._tokens_admitted += tokens

    def _leave(self, waiter: _Waiter) -> None:
        was_first = self._queue[0] is waiter
        self._queue.remove(waiter)
        if was_first and self._queue:
            self._queue[0].turn.set()
