"""The ``twinklr-pipeline`` command: its subcommands and its progress displays.

One module per subcommand, each registering itself (``add_*_command``); ``cli``
assembles them and is the public entry point. A tool: imports the engine and everything
below it, never the other tools (the web view, the testing kit, ``aio``); the ``ui``
subcommand is handed the function that serves the web view. Rich (the ``cli`` extra) is
imported lazily, by the live display only.
"""
