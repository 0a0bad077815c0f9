"""The web view of a run history, to embed in your own Trio program.

``twinklr-pipeline ui`` serves it from the command line. From a program that starts runs
itself, serve it beside them and `RunsView.track` each handle: its page then has a
cancel button. Needs the ``ui`` extra (``pip install "twinklr-pipeline[ui]"``).
"""

from ._ui._app import RunsView
from ._ui._serve import UnsafeBindError, serve

__all__ = ["RunsView", "UnsafeBindError", "serve"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
