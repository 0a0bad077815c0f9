"""LLM helpers: the judge/refine loop, the shared rate limiter, the provider protocol and
a deterministic fake provider.

Imports the vocabulary only (never the engine, nor the other capabilities): a limiter
finds the run it records into through the context variables the engine sets.
"""
