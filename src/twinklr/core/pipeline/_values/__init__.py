"""The values every layer uses: a stage's status, the retry and execution policy, timings,
the context (with the context variables a run sets for its tasks), results.

Imports ``errors`` and ``_base`` only; inside, ``_status`` | ``_policy`` < ``_timing`` |
``_context`` < ``_results`` < ``_current`` (``|``: siblings that do not import each
other).
"""
