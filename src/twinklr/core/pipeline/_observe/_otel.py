"""Optional OpenTelemetry spans (the ``otel`` extra): one span per run, a child span per
stage attempt, with status and attributes.

Nothing here imports OpenTelemetry. Spans are made when the executor is given a tracer,
or when the application has imported ``opentelemetry`` and installed a real tracer
provider; otherwise this is a no-op that costs nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from ._events import TERMINAL_KINDS, EventKind

_ERROR_KINDS = frozenset({EventKind.STAGE_FAILED, EventKind.STAGE_CANCELLED})


def find_tracer(tracer: Any) -> Any:
    """``tracer``, or the application's when it has set up OpenTelemetry, else None."""
    if tracer is not None:
        return tracer
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if type(provider).__name__ in {"ProxyTracerProvider", "NoOpTracerProvider"}:
        return None  # the API without an SDK: spans would go nowhere
    return trace.get_tracer("twinklr.core.pipeline")


class SpanRecorder:
    """Turns a run's transitions into spans. Times come from Trio's clock, anchored to
    the wall clock when the run started."""

    def __init__(
        self,
        tracer: Any,
        pipeline: str,
        run_id: str,
        trio_start: float,
        *,
        usage_of: Callable[[str], tuple[Any, set[str]] | None] | None = None,
    ) -> None:
        from opentelemetry import trace  # noqa: PLC0415 (the optional extra, loaded lazily)

        self._usage_of = usage_of
        self._trace = trace
        self.tracer = tracer
        self.pipeline = pipeline
        self.run_id = run_id
        self._wall_start_ns = time.time_ns()
        self._trio_start = trio_start
        self._run_span: Any = None
        self._open: dict[str, Any] = {}

    def _ns(self, trio_time: float) -> int:
        return self._wall_start_ns + int((trio_time - self._trio_start) * 1e9)

    def on(self, kind: EventKind, stage: str | None, now: float, fields: dict[str, Any]) -> None:
        """Record one transition."""
        if kind is EventKind.RUN_STARTED:
            self._run_span = self.tracer.start_span(
                f"pipeline {self.pipeline}",
                start_time=self._ns(now),
                attributes={"twinklr.pipeline": self.pipeline, "twinklr.run_id": self.run_id},
            )
        elif kind is EventKind.RUN_FINISHED:
            for span in self._open.values():  # stages that never said goodbye
                span.end(end_time=self._ns(now))
            self._end(self._run_span, now, ok=bool(fields.get("success")), error=None)
        elif stage is None or fields.get("item") is not None:
            self._item_event(kind, stage, now, fields)
        elif kind is EventKind.STAGE_STARTED:
            self._start_attempt(stage, now, 1)
        elif kind is EventKind.ATTEMPT_FAILED:
            self._end(self._open.pop(stage, None), now, ok=False, error=fields.get("error"))
        elif kind is EventKind.STAGE_RETRYING:
            delay_s = (fields.get("delay_ms") or 0) / 1000
            self._start_attempt(stage, now + delay_s, fields.get("attempt", 1) + 1)
        elif kind in TERMINAL_KINDS:
            span = self._open.pop(stage, None)
            if span is not None:
                span.set_attribute("twinklr.status", kind.value.removeprefix("stage_"))
                self._gen_ai(span, stage)
            self._end(span, now, ok=kind not in _ERROR_KINDS, error=fields.get("error"))

    def _gen_ai(self, span: Any, stage: str) -> None:
        """What the stage's LLM calls used, with OpenTelemetry's GenAI attribute names."""
        found = self._usage_of(stage) if self._usage_of is not None else None
        if found is None:
            return
        usage, models = found
        if models:
            span.set_attribute("gen_ai.request.model", ",".join(sorted(models)))
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        span.set_attribute("twinklr.llm.requests", usage.requests)
        if usage.cost_usd is not None:
            span.set_attribute("twinklr.llm.cost_usd", usage.cost_usd)

    def _start_attempt(self, stage: str, at: float, attempt: int) -> None:
        context = self._trace.set_span_in_context(self._run_span)
        self._open[stage] = self.tracer.start_span(
            f"stage {stage}",
            context=context,
            start_time=self._ns(at),
            attributes={
                "twinklr.pipeline": self.pipeline,
                "twinklr.run_id": self.run_id,
                "twinklr.stage": stage,
                "twinklr.attempt": attempt,
            },
        )

    def _item_event(
        self, kind: EventKind, stage: str | None, now: float, fields: dict[str, Any]
    ) -> None:
        span = self._open.get(stage) if stage is not None else None
        if span is not None and kind in {EventKind.ITEM_FINISHED, EventKind.ATTEMPT_FAILED}:
            attributes = {f"twinklr.{k}": v for k, v in fields.items() if v is not None}
            span.add_event(kind.value, attributes=attributes, timestamp=self._ns(now))

    def _end(self, span: Any, now: float, *, ok: bool, error: str | None) -> None:
        if span is None:
            return
        status = self._trace.Status(
            self._trace.StatusCode.OK if ok else self._trace.StatusCode.ERROR, error
        )
        span.set_status(status)
        span.end(end_time=self._ns(now))
