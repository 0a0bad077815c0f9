"""The library's log records: structlog events when the application configured
structlog, standard ``logging`` records under ``twinklr.core.pipeline`` otherwise.

The library never configures logging. The ``twinklr`` logger has a ``NullHandler``, so a
program that configured nothing sees nothing (a failed stage is a result, not a line on
stderr), and one that called ``logging.basicConfig(level=logging.DEBUG)`` sees every
transition, with ``pipeline``, ``run_id``, ``stage`` and ``attempt`` as record
attributes. When nobody listens, a record costs a level check.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

#: The logger the library's records go to (its parent ``twinklr`` has the NullHandler).
LOGGER_NAME = "twinklr.core.pipeline"

logging.getLogger("twinklr").addHandler(logging.NullHandler())

# What a record's ``extra`` may not overwrite.
_RESERVED = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime"}
)


class EventLogger(Protocol):
    """structlog's calling convention: an event name and its fields."""

    def bind(self, **fields: Any) -> EventLogger:
        """A logger that adds ``fields`` to every event."""
        ...

    def debug(self, event: str, **fields: Any) -> Any:
        """Log ``event`` at DEBUG."""
        ...

    def info(self, event: str, **fields: Any) -> Any:
        """Log ``event`` at INFO."""
        ...

    def warning(self, event: str, **fields: Any) -> Any:
        """Log ``event`` at WARNING."""
        ...


def run_logger(**fields: Any) -> EventLogger:
    """The logger for one run, bound to ``fields``: structlog's when the application has
    configured structlog (its events stay exactly as they were), else the stdlib one.
    An application that configured structlog has imported it: the library never does."""
    structlog = sys.modules.get("structlog")
    if structlog is not None and structlog.is_configured():
        bound: EventLogger = structlog.get_logger(LOGGER_NAME).bind(**fields)
        return bound
    return StdlibEvents(logging.getLogger(LOGGER_NAME), fields)


class StdlibEvents:
    """structlog-style calls (``log.info("stage_started", stage="a")``) made on a
    standard ``logging.Logger``; the message is formatted only if a handler emits it."""

    __slots__ = ("_fields", "_logger")

    def __init__(self, logger: logging.Logger, fields: dict[str, Any]) -> None:
        self._logger = logger
        self._fields = fields

    def bind(self, **fields: Any) -> StdlibEvents:
        """A logger that adds ``fields`` to every event."""
        return StdlibEvents(self._logger, {**self._fields, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at ``level`` would be handled (structlog's spelling)."""
        return self._logger.isEnabledFor(level)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._log(logging.WARNING, event, fields)

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged = {**self._fields, **fields}
        extra = {name: value for name, value in merged.items() if name not in _RESERVED}
        extra["event"] = event
        self._logger.log(level, "%s", _Message(event, merged), extra=extra, stacklevel=3)


class _Message:
    """``event key=value ...`` (fields that are None left out), built when emitted."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: dict[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        shown = " ".join(f"{k}={v!r}" for k, v in self.fields.items() if v is not None)
        return f"{self.event} {shown}" if shown else self.event
