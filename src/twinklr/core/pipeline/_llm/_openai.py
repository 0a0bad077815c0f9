"""An LLM provider over the official ``openai`` SDK (the ``openai`` extra): OpenAI and
every server that speaks its chat completions API (vLLM, Ollama, LM Studio, Groq, ...).
What happens around the request is ``_sdk``'s."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import attrs

from ._provider import Completion
from ._sdk import Message, SDKProvider, import_extra


@attrs.define
class OpenAIProvider(SDKProvider):
    """Chat completions through ``openai.AsyncOpenAI``, counted for the stage calling:
    ``OpenAIProvider("gpt-4o-mini")``, or a local server with ``base_url=
    "http://127.0.0.1:8000/v1"``; without them, the ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY`` variables. ``chat(..., **params)`` passes ``params`` to
    ``chat.completions.create``; an ``output_type`` asks for its JSON schema
    (``response_format``)."""

    provider_id: ClassVar[str] = "openai"

    def _sdk(self) -> Any:
        return import_extra("openai", type(self).__name__)

    def _new_client(self, sdk: Any) -> Any:
        return sdk.AsyncOpenAI(
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=self.api_key or os.environ.get("OPENAI_API_KEY") or "unset",
            max_retries=0,  # the provider retries, so waits are shared and seen
        )

    async def _create(
        self, client: Any, messages: list[Message], output_type: Any, params: dict[str, Any]
    ) -> Any:
        request = dict(params)
        if output_type is not None:
            schema = output_type.model_json_schema()
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": output_type.__name__, "schema": schema, "strict": False},
            }
        return await client.chat.completions.create(model=self.model, messages=messages, **request)

    async def _open_stream(
        self, client: Any, messages: list[Message], params: dict[str, Any]
    ) -> Any:
        return await client.chat.completions.create(
            model=self.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},  # (the last chunk says the usage)
            **params,
        )

    def _chunk(self, chunk: Any, used: list[int]) -> tuple[str | None, str | None]:
        usage = chunk.usage
        if usage is not None:
            details = getattr(usage, "prompt_tokens_details", None)
            cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
            used[:] = [usage.prompt_tokens or 0, usage.completion_tokens or 0, cached]
        text = chunk.choices[0].delta.content if chunk.choices else None
        return text, chunk.model

    def _completion(self, response: Any, output_type: Any) -> Completion:
        text = response.choices[0].message.content or ""
        usage = response.usage
        used_in = used_out = cached = 0
        if usage is not None:
            used_in, used_out = usage.prompt_tokens or 0, usage.completion_tokens or 0
            details = getattr(usage, "prompt_tokens_details", None)
            cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
        return self._answered(text, response.model, (used_in, used_out, cached), output_type)
