"""The ``twinklr-pipeline`` command: run, validate, graph, cache, demo.

Exit status: 0 on success, 1 when a run failed, 2 for a usage or validation error (one
line on stderr, no traceback), 130 when interrupted (Ctrl-C cancels the run cleanly and
names the stages it cancelled). The entry point of the console script and of
``python -m twinklr.core.pipeline.cli``; the command lives in ``_cli``.
"""

import sys

from ._cli._commands import (
    DEFAULT_CACHE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    build_parser,
    cmd_cache,
    cmd_demo,
    cmd_graph,
    cmd_run,
    cmd_validate,
    load_pipeline,
    main,
    make_progress,
    parse_input,
)
from ._cli._progress import Progress, execute_with_progress

__all__ = [
    "DEFAULT_CACHE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Progress",
    "UsageError",
    "build_parser",
    "cmd_cache",
    "cmd_demo",
    "cmd_graph",
    "cmd_run",
    "cmd_validate",
    "execute_with_progress",
    "load_pipeline",
    "main",
    "make_progress",
    "parse_input",
]

# Present the command's names as living here, where they always were (as the package
# does for its own exports).
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("twinklr.core.pipeline._cli."):
        _obj.__module__ = "twinklr.core.pipeline.cli"  # (also when run with -m)
del _name, _obj

if __name__ == "__main__":
    sys.exit(main())
