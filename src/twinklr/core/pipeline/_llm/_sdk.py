"""What the providers over the official SDKs share (``openai``, ``anthropic``): the
request's life around the SDK call.

An SDK is imported when its provider first calls, never with the package. It runs on
the loop of the stage calling: on Trio (the SDKs' HTTP client works on Trio through
anyio), or on asyncio for a stage of an ``aio`` run written for asyncio (a client each,
since a connection belongs to the loop that opened it); the rate limiter, a Trio object,
is waited for in the run's Trio loop either way, so it paces every caller alike. The
SDKs' own retries are off: a provider retries a rate limit, a server error, a timeout or
a lost connection itself, up to ``max_retries``, waiting as a 429's ``Retry-After``
asks and pausing its limiter meanwhile, so every caller waits. The budget is checked
before each request, and each answer's usage is counted for the stage that asked.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import attrs
import sniffio
import trio

from .._values._usage import Prices, cost_of, record_streamed
from ..errors import ProviderError
from ._calls import Call, TextStream
from ._provider import Completion, counted, within_budget

if TYPE_CHECKING:
    from .._values._context import PipelineContext

#: What a chat message is: ``{"role": "user", "content": "..."}`` (the SDKs' own types too).
Message = Mapping[str, Any]


@attrs.define
class SDKProvider:
    """A provider over an official SDK (see `OpenAIProvider`, `AnthropicProvider`)."""

    model: str
    """The model to ask."""
    client: Any = attrs.field(default=None, kw_only=True)
    """A client of your own (its retries as you set them, closed by you); None: one is
    made on first use from ``base_url`` and ``api_key`` (or the SDK's environment
    variables), closed by `aclose`."""
    base_url: str | None = attrs.field(default=None, kw_only=True)
    """Where the server is (a local one: ``"http://127.0.0.1:8000/v1"``)."""
    api_key: str | None = attrs.field(default=None, kw_only=True, repr=False)
    """The key (a local server takes anything)."""
    limiter: str | None = attrs.field(default=None, kw_only=True)
    """Which of the context's limiters to wait for; None: ``context.rate_limiter`` when
    the context has one."""
    prices: Prices | None = attrs.field(default=None, kw_only=True)
    """US dollars per million input and output tokens (and optionally cached input
    tokens) by model, for each completion's ``cost_usd`` (None when its model is not
    there: never a guess)."""
    max_retries: int = attrs.field(default=2, kw_only=True)
    """How often a rate limit, a server error, a timeout or a lost connection is
    retried before `ProviderError` is raised."""
    _made: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    #: Who serves ``model`` when no ``base_url`` says otherwise (for the price database).
    provider_id: ClassVar[str] = ""

    def __attrs_post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.model, str) or not self.model:
            msg = f"{name} needs a model name, got {self.model!r}"
            raise ValueError(msg)
        if type(self.max_retries) is not int or self.max_retries < 0:
            retries = self.max_retries
            msg = f"{name} max_retries must be a whole number >= 0, got {retries!r}"
            raise ValueError(msg)

    async def complete(self, prompt: str, context: PipelineContext | None = None) -> Completion:
        """Answer ``prompt`` (one user message); the `LLMProvider` protocol."""
        return await self.chat([{"role": "user", "content": prompt}], context)

    async def chat(
        self,
        messages: Sequence[Message],
        context: PipelineContext | None = None,
        *,
        output_type: Any = None,
        **params: Any,
    ) -> Completion:
        """Send ``messages``; with a pydantic model class as ``output_type``, ask for
        output matching its JSON schema and return it validated in ``parsed``.
        ``params`` go to the SDK's create call (``temperature``, ...)."""
        if output_type is not None and not hasattr(output_type, "model_json_schema"):
            msg = f"output_type must be a pydantic model class, got {output_type!r}"
            raise TypeError(msg)
        call = await self._prepared(messages, context)
        response = await call.send(
            lambda client: self._create(client, list(messages), output_type, params)
        )
        return call.settled(counted(self._completion(response, output_type), context))

    def stream(
        self, prompt: str | Sequence[Message], context: PipelineContext | None = None, **params: Any
    ) -> TextStream:
        """Stream the answer to ``prompt`` (a text, or chat messages): ``async for delta
        in provider.stream(...)`` gives its text as it comes, and ``.completion`` then has
        all of it with its usage and cost. Each piece is also a ``STAGE_TOKENS`` event of
        the stage calling (gathered, a few a second), so a run's watchers see a long
        answer grow. Retried as `chat` is until the answer begins."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return TextStream(self._streamed(list(messages), context, params))

    async def _streamed(
        self, messages: list[Message], context: PipelineContext | None, params: dict[str, Any]
    ) -> AsyncGenerator[str | Completion, None]:
        call = await self._prepared(messages, context)
        chunks = await call.send(lambda client: self._open_stream(client, messages, params))
        parts: list[str] = []
        used = [0, 0, 0]  # input, output, cached input tokens, as the chunks say
        model = None
        try:
            async for chunk in chunks:
                delta, seen = self._chunk(chunk, used)
                model = seen or model
                if delta:
                    parts.append(delta)
                    record_streamed(delta)  # (the run gathers pieces into a few events)
                    yield delta
        except call.sdk.APIError as exc:
            msg = f"stream: {self.model}: the answer broke off: {exc}"
            raise ProviderError(msg) from exc
        finally:
            await chunks.close()  # the SDK's stream, and its connection's body
        text = "".join(parts)
        answered = self._answered(text, model, (used[0], used[1], used[2]), None)
        yield call.settled(counted(answered, context))

    async def _prepared(self, messages: Sequence[Message], context: PipelineContext | None) -> Call:
        """A request, once the budget allows it and the limiter admits it."""
        within_budget(context)
        on_asyncio = sniffio.current_async_library() == "asyncio"  # an aio run's stage
        limiter = _limiter_of(context, self.limiter)
        tokens = _estimate(messages)
        if limiter:
            await limiter.wait_for_capacity(tokens)  # (from asyncio too: in the Trio run)
        if "genai_prices" not in _DATABASE:  # (imported once, off the loop: 0.7 s)
            await (_asyncio_to_thread if on_asyncio else trio.to_thread.run_sync)(_load_database)
        sdk = self._sdk()
        client = self._client(sdk, on_asyncio=on_asyncio)
        return Call(self, sdk, client, limiter, tokens, on_asyncio)

    def _client(self, sdk: Any, *, on_asyncio: bool) -> Any:
        """The client given, else the one this provider made for this loop (an HTTP
        connection belongs to the loop that opened it)."""
        if self.client is not None:
            return self.client
        loop = "asyncio" if on_asyncio else "trio"
        made = self._made.get(loop)
        if made is None:
            made = self._made[loop] = self._new_client(sdk)
        return made

    async def aclose(self) -> None:
        """Close the client this provider made for the loop this is awaited on (a
        client you gave it is yours to close)."""
        loop = "asyncio" if sniffio.current_async_library() == "asyncio" else "trio"
        made = self._made.pop(loop, None)
        if made is not None:
            await made.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def _answered(
        self,
        text: str,
        model: str | None,
        used: tuple[int, int, int],
        output_type: Any,
        parsed: Any = None,
    ) -> Completion:
        """The completion of an answer: its structured output validated, its cost from
        the table (as the model that answered, else as the one asked for: a dated
        snapshot the table does not name)."""
        model = model or self.model
        if output_type is not None:
            try:
                parsed = (
                    output_type.model_validate_json(text)
                    if parsed is None
                    else output_type.model_validate(parsed)
                )
            except ValueError as exc:
                msg = f"bad_output: {model} did not answer as {output_type.__name__}: {exc}"
                raise ProviderError(msg) from exc
        used_in, used_out, cached = used
        priced = model if self.prices is not None and model in self.prices else self.model
        cost = cost_of(priced, used_in, used_out, cached, self.prices)
        if cost is None:
            cost = self._database_cost(model, used)
        return Completion(
            text=text,
            model=model,
            input_tokens=used_in,
            output_tokens=used_out,
            cached_input_tokens=cached,
            cost_usd=cost,
            parsed=parsed,
        )

    def _database_cost(self, model: str, used: tuple[int, int, int]) -> float | None:
        """What genai-prices (the ``prices`` extra) says a call cost: by the URL of the
        server the client talks to (``base_url``, a client of your own, or the SDK's
        environment variable: a server it does not know is None, never priced as
        another's), else by this provider's own; None for a model it does not know."""
        database = _DATABASE.get("genai_prices")
        if database is None:
            return None
        used_in, used_out, cached = used
        usage = database.Usage(
            input_tokens=used_in, output_tokens=used_out, cache_read_tokens=cached
        )
        client = self.client if self.client is not None else next(iter(self._made.values()), None)
        url = getattr(client, "base_url", None) or self.base_url
        where: dict[str, Any] = (
            {"provider_api_url": str(url)} if url else {"provider_id": self.provider_id}
        )
        try:
            return float(database.calc_price(usage, model_ref=model, **where).total_price)
        except LookupError:
            return None

    # -- what each SDK does its own way --

    async def _open_stream(
        self, client: Any, messages: list[Message], params: dict[str, Any]
    ) -> Any:
        """The request, streamed: an async iterator of the SDK's chunks."""
        raise NotImplementedError

    def _chunk(self, chunk: Any, used: list[int]) -> tuple[str | None, str | None]:
        """A chunk's text and model (either None); the tokens it reports go in ``used``
        (input, output, cached input)."""
        raise NotImplementedError

    def _sdk(self) -> Any:
        """The SDK's module (imported on first use)."""
        raise NotImplementedError

    def _new_client(self, sdk: Any) -> Any:
        """A client with the SDK's retries off."""
        raise NotImplementedError

    async def _create(
        self, client: Any, messages: list[Message], output_type: Any, params: dict[str, Any]
    ) -> Any:
        """The request."""
        raise NotImplementedError

    def _completion(self, response: Any, output_type: Any) -> Completion:
        """The answer as a `Completion` (through `_answered`)."""
        raise NotImplementedError


#: The price database, once looked for: ``{"genai_prices": module or None}``.
_DATABASE: dict[str, Any] = {}


def _load_database() -> None:
    try:
        import genai_prices  # noqa: PLC0415 (the prices extra, looked for once)
    except ImportError:  # pragma: no cover (installed in the suite)
        _DATABASE["genai_prices"] = None
    else:
        _DATABASE["genai_prices"] = genai_prices


async def _asyncio_to_thread(function: Any) -> None:
    import asyncio  # noqa: PLC0415 (an aio run's: loaded already)

    await asyncio.to_thread(function)


def _limiter_of(context: PipelineContext | None, name: str | None) -> Any:
    if context is None:
        return None
    return context.rate_limiter if name is None else context.limiter(name)


def _estimate(messages: Sequence[Message]) -> int:
    """Tokens a request may use, before it is sent (about four characters a token)."""
    return max(1, math.ceil(len(json.dumps(messages, default=str)) / 4))


def import_extra(name: str, provider: str) -> Any:
    """The SDK ``name`` (the extra of the same name), imported on first use."""
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover (the extras are installed in the suite)
        msg = f"{provider} needs the {name} SDK: pip install 'twinklr-pipeline[{name}]'"
        raise ImportError(msg) from exc
