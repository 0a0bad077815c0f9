"""The engine: the executor and its runs, one Trio task per stage (the actors), fan-out,
attempts under retry and timeout, the compiled plan, edge channels, run handles.

May import the vocabulary and every capability (cache, observe, llm, offload); nothing
below it imports the engine.
"""
