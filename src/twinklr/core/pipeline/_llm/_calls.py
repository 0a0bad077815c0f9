"""One request's way to the server (sent, retried as a provider says) and an answer as
it streams: what ``_sdk``'s providers use."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, Self

import attrs
import trio

from ..errors import ProviderError
from ._provider import Completion

if TYPE_CHECKING:
    from ._sdk import SDKProvider

#: First wait before retrying a failure that names no wait of its own (doubling).
BACKOFF_S = 0.5


class TextStream:
    """An answer as it streams: ``async for delta in stream`` gives its text piece by
    piece; ``completion`` has all of it, with its usage and cost, once it has ended.
    Leaving early: ``await stream.aclose()`` (or ``async with stream:``) closes it."""

    def __init__(self, pieces: AsyncGenerator[str | Completion, None]) -> None:
        self._pieces = pieces
        self.completion: Completion | None = None
        """The whole answer, once the stream has ended."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        piece = await anext(self._pieces)
        if isinstance(piece, Completion):
            self.completion = piece
            await self._pieces.aclose()
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        """Stop reading (the request is closed)."""
        await self._pieces.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


@attrs.frozen
class Call:
    """One request's way to the server: sent, and retried as `SDKProvider` says."""

    provider: SDKProvider
    sdk: Any
    client: Any
    limiter: Any
    tokens: int
    on_asyncio: bool

    async def send(self, create: Any) -> Any:
        """``await create(client)``, retried on a rate limit (the limiter paused for
        everyone meanwhile), a server error, a timeout or a lost connection."""
        sdk, limiter, retries = self.sdk, self.limiter, self.provider.max_retries
        model = self.provider.model
        sleep = _asyncio_sleep if self.on_asyncio else trio.sleep
        for attempt in range(retries + 1):
            try:
                return await create(self.client)
            except sdk.APIStatusError as exc:
                kind = _kind_of(exc.status_code)
                if kind in ("bad_request", "auth") or attempt == retries:
                    raise ProviderError(f"{kind}: {model}: {_said(exc)}") from exc
                wait = _retry_after(exc.response.headers, attempt)
                if limiter and exc.status_code in (429, 503) and hasattr(limiter, "pause"):
                    limiter.pause(wait)  # every caller of the limiter waits, not only this one
                    await limiter.wait_for_capacity(self.tokens)
                else:
                    await sleep(wait)
            except (sdk.APITimeoutError, sdk.APIConnectionError) as exc:
                kind = "timeout" if isinstance(exc, sdk.APITimeoutError) else "connection"
                if attempt == retries:
                    raise ProviderError(f"{kind}: {model}: {exc}") from exc
                await sleep(float(BACKOFF_S * 2**attempt))
        raise AssertionError  # pragma: no cover (the loop returns or raises)

    def settled(self, completion: Completion) -> Completion:
        """``completion``, once the limiter counts the tokens it used, not the estimate
        it was admitted with (a limiter that cannot: as it is)."""
        settle = getattr(self.limiter, "settle", None)
        if self.limiter and settle is not None and completion.tokens_used:
            settle(self.tokens, completion.tokens_used)
        return completion


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # noqa: PLC0415 (an aio run's: loaded already)

    await asyncio.sleep(seconds)


def _kind_of(status: int) -> str:
    """The first word of a failure's message (what ``retryable_errors`` matches)."""
    if status == 429:  # noqa: PLR2004 (HTTP statuses)
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status >= 500:  # noqa: PLR2004
        return "server_error"
    return "bad_request"


def _said(exc: Any) -> str:
    return f"HTTP {exc.status_code}: {getattr(exc, 'message', exc)}"


def _retry_after(headers: Mapping[str, str], attempt: int) -> float:
    """How long a refused call asks to wait (``retry-after-ms``, ``Retry-After`` in
    seconds or as an HTTP date), else a doubling backoff."""
    import email.utils  # noqa: PLC0415 (on a refusal only)
    import time  # noqa: PLC0415

    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    after = headers.get("retry-after")
    if after is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(after)
            except (TypeError, ValueError):  # neither seconds nor a date: back off
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    return float(BACKOFF_S * 2**attempt)
