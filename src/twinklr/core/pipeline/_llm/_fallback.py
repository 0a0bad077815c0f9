"""A provider that falls back: the next provider answers when one fails for a reason
that is not the request's fault."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ProviderError

if TYPE_CHECKING:
    from .._values._context import PipelineContext
    from ._provider import Completion

#: The failures another provider may not have (the first word of a `ProviderError`).
NOT_THE_REQUESTS_FAULT = ("rate_limit", "server_error", "timeout", "connection")


def _providers(value: Sequence[Any]) -> tuple[Any, ...]:
    providers = tuple(value)
    if not providers:
        msg = "FallbackProvider needs at least one provider"
        raise ValueError(msg)
    for provider in providers:
        if not callable(getattr(provider, "complete", None)):
            msg = f"FallbackProvider: {provider!r} has no complete() (not an LLM provider)"
            raise TypeError(msg)
    return providers


@attrs.define
class FallbackProvider:
    """Asks ``providers`` in order: when one fails with a rate limit (after its own
    retries), a server error, a timeout or a lost connection, the next answers; the
    completion's ``model`` says which did. A failure that is the request's fault (a bad
    request, a refused key, an answer not of the ``output_type``) or a spent budget is
    raised at once. When every provider fails, `ProviderError` says what each said,
    starting with the last failure's kind (so ``retryable_errors`` still match)."""

    providers: tuple[Any, ...] = attrs.field(converter=_providers)
    """The providers, first choice first."""

    async def complete(self, prompt: str, context: PipelineContext | None = None) -> Completion:
        """Answer ``prompt`` with the first provider that can."""
        return await self._first("complete", (prompt, context), {})

    async def chat(
        self, messages: Sequence[Any], context: PipelineContext | None = None, **params: Any
    ) -> Completion:
        """``chat`` with the first provider that can (each must have ``chat``)."""
        return await self._first("chat", (messages, context), params)

    async def _first(
        self, method: str, args: tuple[Any, ...], params: dict[str, Any]
    ) -> Completion:
        failures: list[str] = []
        kind = "server_error"
        for provider in self.providers:
            call = getattr(provider, method, None)
            if call is None:
                msg = f"FallbackProvider: {provider!r} has no {method}()"
                raise TypeError(msg)
            try:
                completion: Completion = await call(*args, **params)
            except ProviderError as exc:
                text = str(exc)
                kind = text.split(":", 1)[0].strip()
                if kind not in NOT_THE_REQUESTS_FAULT:
                    raise
                failures.append(text)
                continue
            return completion
        msg = f"{kind}: every provider failed: " + "; ".join(failures)
        raise ProviderError(msg)
