"""The engine: the compiled plan, the executor and its supervisor, runs (their telemetry,
routing, result), one Trio task per stage (the actors), fan-out, attempts under retry
and timeout, edge channels, run handles, suspending and resuming, and the hosts that run
asyncio stages (imported only when a run needs them).

May import the vocabulary and every capability (cache, observe, llm, offload); nothing
below it imports the engine.
"""
