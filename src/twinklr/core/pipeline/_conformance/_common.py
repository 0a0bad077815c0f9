"""What the store conformance cases share: running each case on a fresh store, and
naming the promise a store broke."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

#: One case: a check of one promise, given a fresh store.
Check = Callable[[Any], Awaitable[None]]


async def check_each(kind: str, factory: Callable[[], Any], cases: list[tuple[str, Check]]) -> None:
    """Run every case on a fresh store from ``factory``; raise an `AssertionError`
    naming the first promise broken (an error the store raised breaks it too)."""
    for promise, check in cases:
        store = factory()
        try:
            await check(store)
        except AssertionError as exc:
            msg = f"{store!r} breaks a {kind} promise: {promise}: {exc}"
            raise AssertionError(msg) from None
        except Exception as exc:
            msg = f"{store!r} breaks a {kind} promise: {promise}: {type(exc).__name__}: {exc}"
            raise AssertionError(msg) from exc
        finally:
            await _close(store)


async def _close(store: Any) -> None:
    for name in ("aclose", "close"):
        method = getattr(store, name, None)
        if method is not None:
            done = method()
            if inspect.isawaitable(done):
                await done
            return


def expect(holds: bool, broken: str) -> None:  # noqa: FBT001
    """Raise an `AssertionError` saying ``broken`` unless ``holds`` (an ``assert`` that
    ``python -O`` keeps)."""
    if not holds:
        raise AssertionError(broken)
