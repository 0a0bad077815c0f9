"""An LLM provider over the official ``anthropic`` SDK (the ``anthropic`` extra): Claude
through the Messages API. What happens around the request is ``_sdk``'s."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import attrs

from ._provider import Completion
from ._sdk import Message, SDKProvider, import_extra

#: ``max_tokens`` when the call does not say (the Messages API needs one).
MAX_TOKENS = 4096


@attrs.define
class AnthropicProvider(SDKProvider):
    """Messages through ``anthropic.AsyncAnthropic``, counted for the stage calling:
    ``AnthropicProvider("claude-sonnet-4-5")``, or a compatible server with ``base_url=``;
    without them, the ``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` variables.
    System messages become the ``system`` prompt; ``chat(..., **params)`` passes
    ``params`` to ``messages.create`` (``max_tokens`` is 4096 unless given); an
    ``output_type`` is asked for as the input of a tool the model must call, its JSON
    schema the tool's. Input tokens count those read from the prompt cache and those
    written to it; ``cached_input_tokens`` are the ones read."""

    provider_id: ClassVar[str] = "anthropic"

    def _sdk(self) -> Any:
        return import_extra("anthropic", type(self).__name__)

    def _new_client(self, sdk: Any) -> Any:
        return sdk.AsyncAnthropic(
            base_url=self.base_url or os.environ.get("ANTHROPIC_BASE_URL"),
            api_key=self.api_key or os.environ.get("ANTHROPIC_API_KEY") or "unset",
            max_retries=0,  # the provider retries, so waits are shared and seen
        )

    async def _create(
        self, client: Any, messages: list[Message], output_type: Any, params: dict[str, Any]
    ) -> Any:
        request, chat = _request(messages, params)
        if output_type is not None:
            name = output_type.__name__
            request["tools"] = [
                {
                    "name": name,
                    "description": f"Answer as a {name}.",
                    "input_schema": output_type.model_json_schema(),
                }
            ]
            request["tool_choice"] = {"type": "tool", "name": name}
        return await client.messages.create(model=self.model, messages=chat, **request)

    async def _open_stream(
        self, client: Any, messages: list[Message], params: dict[str, Any]
    ) -> Any:
        request, chat = _request(messages, params)
        return await client.messages.create(model=self.model, messages=chat, stream=True, **request)

    def _chunk(self, event: Any, used: list[int]) -> tuple[str | None, str | None]:
        kind = getattr(event, "type", "")
        if kind == "message_start":
            usage = event.message.usage
            read = getattr(usage, "cache_read_input_tokens", 0) or 0
            written = getattr(usage, "cache_creation_input_tokens", 0) or 0
            used[0], used[2] = (usage.input_tokens or 0) + read + written, read
            return None, event.message.model
        if kind == "message_delta":
            used[1] = event.usage.output_tokens or 0
        elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
            return event.delta.text, None
        return None, None

    def _completion(self, response: Any, output_type: Any) -> Completion:
        text = "".join(
            block.text for block in response.content if getattr(block, "type", "") == "text"
        )
        parsed = next(
            (block.input for block in response.content if getattr(block, "type", "") == "tool_use"),
            None,
        )
        usage = response.usage
        read = getattr(usage, "cache_read_input_tokens", 0) or 0
        written = getattr(usage, "cache_creation_input_tokens", 0) or 0
        used_in = (usage.input_tokens or 0) + read + written
        used = (used_in, usage.output_tokens or 0, read)
        if output_type is not None and parsed is None:
            parsed = {}  # no tool call: validation says what is missing
        return self._answered(text, response.model, used, output_type, parsed)


def _request(messages: list[Message], params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The request's settings (``max_tokens``, the system prompt) and its messages."""
    request = {"max_tokens": MAX_TOKENS, **params}
    system = [str(m["content"]) for m in messages if m.get("role") == "system"]
    if system and "system" not in request:
        request["system"] = "\n\n".join(system)
    return request, [dict(m) for m in messages if m.get("role") != "system"]
