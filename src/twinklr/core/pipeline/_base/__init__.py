"""Helpers with no project imports: graph algorithms, SQLite file handling, and which
event loop code runs on (with the hand-overs between Trio and asyncio).

The bottom layer: every other part of the package may import it; it imports nothing of
the package.
"""
