"""Caching: the store protocol and its stores, one run's view of a store, serialization.

Owns what makes a failed run resumable: keys, success-only writes, replayed state, and
JSON that never unpickles. Imports the vocabulary only (never the engine, nor the
other capabilities); the engine decides which stages are cached and calls in here.
"""
