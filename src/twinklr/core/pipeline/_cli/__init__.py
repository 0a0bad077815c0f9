"""The ``twinklr-pipeline`` command: its subcommands and its progress displays.

A tool on top: imports the engine and everything below it; ``cli`` is its public entry
point. Rich (the ``cli`` extra) is imported lazily, by the live display only.
"""
