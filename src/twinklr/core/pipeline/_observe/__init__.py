"""Observability: live events, log records, the per-stage timeline, trace and gantt
exports, graph pictures, OpenTelemetry spans, and the run history (its records, progress
codec, reading and writing, event replay).

Imports the vocabulary only (never the engine, nor the other capabilities): the engine
reports its transitions and timings here, and the exports read finished results.
"""
