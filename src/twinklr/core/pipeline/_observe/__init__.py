"""Observability: live events, log records, the per-stage timeline, trace and gantt
exports, graph pictures, and OpenTelemetry spans.

Imports the vocabulary only (never the engine, nor the other capabilities): the engine
reports its transitions and timings here, and the exports read finished results.
"""
