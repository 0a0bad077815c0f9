"""Gates: stages whose output a person (or a program) provides while the run waits.

A `WaitForInput` stage opens a request in its run's `Gates` and waits for the answer;
the run's handle lists the open requests (`waiting`) and answers them (`respond`). The
rest of the run goes on meanwhile: only the gate's dependents wait for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Mapping
from contextvars import ContextVar
from typing import Any, Final

import attrs
import trio

from .._base._loops import mark
from .._values._answers import validate_answer
from .._values._results import StageResult


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()
"""`WaitForInput`'s default ``default``: a timeout fails the gate."""


@attrs.frozen(kw_only=True)
class InputRequest:
    """A gate waiting for its answer (`RunHandle.waiting`)."""

    stage_id: str
    prompt: str
    input: Any
    """What the gate's stage received: shown with the prompt."""
    since: dt.datetime
    """When the gate opened (UTC)."""
    answer_type: Any = None
    """The type an answer must have (`WaitForInput`'s ``answer_type``), or None."""


@attrs.define
class _Open:
    request: InputRequest
    answered: trio.Event = attrs.field(factory=trio.Event)
    value: Any = None
    answered_at: dt.datetime | None = None
    described: dict[str, Any] | None = None  # (what the run store records, made once)


class Gates:
    """One run's open requests for input, and the answers given."""

    def __init__(
        self,
        stage_ids: Container[str],
        on_request: Callable[[str], None],
        on_answer: Callable[[str], None],
        answers: Mapping[str, Any] | None = None,
    ) -> None:
        self._known = stage_ids
        self._open: dict[str, _Open] = {}
        self._answered: set[str] = set()
        self._on_request = on_request
        self._on_answer = on_answer
        # Answers given before the gates opened (a resumed run's): each gate that has
        # one is answered the moment it opens.
        self.answers: dict[str, Any] = dict(answers or {})
        # Why an answer given through the run store was refused (not of the gate's
        # type), by gate, until it is answered: the store shows it with the gate.
        self.refused: dict[str, str] = {}

    def open(self, stage_id: str, prompt: str, value: Any, answer_type: Any = None) -> _Open:
        """Open stage ``stage_id``'s request (its task then waits for the answer)."""
        request = InputRequest(
            stage_id=stage_id,
            prompt=prompt,
            input=value,
            since=dt.datetime.now(dt.UTC),
            answer_type=answer_type,
        )
        opened = self._open[stage_id] = _Open(request)
        given = stage_id in self.answers
        if given:  # answered before it asked (a resumed run): no wait, nothing to suspend for
            try:
                self._settle(opened, validate_answer(stage_id, answer_type, self.answers[stage_id]))
            except ValueError as exc:  # it waits for a right one
                given = False
                del self.answers[stage_id]
                self.refused[stage_id] = str(exc)
        self._on_request(stage_id)
        if given:
            self._on_answer(stage_id)
        return opened

    def close(self, stage_id: str) -> None:
        """The gate's task is done waiting (answered, timed out or cancelled)."""
        self._open.pop(stage_id, None)

    def waiting(self) -> list[InputRequest]:
        """The open requests not answered yet, oldest first."""
        return [opened.request for opened in self._open.values() if not opened.answered.is_set()]

    def respond(self, stage_id: str, value: Any) -> None:
        """Answer stage ``stage_id``'s request with ``value`` (its output): `LookupError`
        when it does not wait, `ValueError` naming the field when ``value`` is not of the
        gate's ``answer_type`` (it then waits on)."""
        opened = self._open.get(stage_id)
        if opened is None or opened.answered.is_set():
            if stage_id in self._answered:
                msg = f"stage '{stage_id}' has already been answered"
            elif stage_id in self._known:
                msg = f"stage '{stage_id}' is not waiting for input{self._listing()}"
            else:
                msg = f"the run has no stage '{stage_id}'{self._listing()}"
            raise LookupError(msg)
        self._settle(opened, validate_answer(stage_id, opened.request.answer_type, value))
        self.refused.pop(stage_id, None)
        self._on_answer(stage_id)

    def _settle(self, opened: _Open, value: Any) -> None:
        opened.value = value
        opened.answered_at = dt.datetime.now(dt.UTC)
        opened.answered.set()
        self._answered.add(opened.request.stage_id)

    def described(self, describe: Callable[[InputRequest], dict[str, Any]]) -> list[dict[str, Any]]:
        """The waiting requests as ``describe`` gives them (made once per request: the
        recorder asks every batch), with why an answer was refused, if one was."""
        found = []
        for opened in self._open.values():
            if opened.answered.is_set():
                continue
            if opened.described is None:
                opened.described = describe(opened.request)
            refused = self.refused.get(opened.request.stage_id)
            shown = opened.described
            found.append(shown if refused is None else {**shown, "refused": refused})
        return found

    def _listing(self) -> str:
        waiting = ", ".join(f"'{stage_id}'" for stage_id in self._open) or "none"
        return f" (waiting for input: {waiting})"


#: The open requests for input of the run this task belongs to (a `WaitForInput` stage
#: opens its request there; the run's handle answers it).
current_gates: ContextVar[Gates | None] = ContextVar("twinklr_current_gates", default=None)


@attrs.frozen
class WaitForInput:
    """A stage whose output is the value someone gives it while the run waits.

    Its input is shown with ``prompt`` (`RunHandle.waiting`); `RunHandle.respond` gives
    the answer, which becomes its output. Stages that do not depend on it go on in the
    meantime. After ``timeout_ms`` without an answer the gate fails like any stage,
    unless a ``default`` is given: that is then its output.
    """

    prompt: str
    timeout_ms: float | None = attrs.field(default=None, kw_only=True)
    default: Any = attrs.field(default=NO_DEFAULT, kw_only=True)
    name: str = attrs.field(default="wait_for_input", kw_only=True)
    answer_type: Any = attrs.field(default=None, kw_only=True)
    """The type an answer must have (a pydantic model, a dataclass, an attrs class, any
    type pydantic or cattrs validates): a wrong answer is refused to whoever gave it,
    naming the field, and the gate waits on; a right one is converted (a model from its
    JSON). None: any value."""

    def __attrs_post_init__(self) -> None:
        timeout = self.timeout_ms
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            msg = f"WaitForInput timeout_ms must be a number > 0, got {timeout!r}"
            raise ValueError(msg)

    async def execute(self, input: Any, context: Any) -> Any:
        """Open the request, wait for its answer (or the timeout), and return it."""
        gates = current_gates.get()
        if gates is None:
            msg = "WaitForInput runs inside a pipeline run (its handle answers it)"
            raise RuntimeError(msg)
        stage_id = trio.lowlevel.current_task().name  # the engine names each stage's task
        opened = gates.open(stage_id, self.prompt, input, self.answer_type)
        try:
            if self.timeout_ms is None:
                await opened.answered.wait()
            else:
                with trio.move_on_after(self.timeout_ms / 1000):
                    await opened.answered.wait()
        finally:
            gates.close(stage_id)
        if opened.answered.is_set():
            assert opened.answered_at is not None  # noqa: S101 (set with the answer)
            answered = {"answered_at": opened.answered_at.isoformat()}
            return StageResult.success(opened.value, metadata=answered)
        if self.default is not NO_DEFAULT:
            return StageResult.success(self.default, metadata={"defaulted": True})
        msg = f"stage '{stage_id}' got no input within {self.timeout_ms:g} ms (timeout)"
        return StageResult.failure(TimeoutError(msg), stage_name=stage_id)


# It waits on the run's own Trio primitives: Trio code in an asyncio program's run too.
mark(WaitForInput, "trio")
