"""``twinklr-pipeline ui``: the run history and a definition's validation in a browser.

An ASGI application (Starlette, on Trio through anyio) served by hypercorn: static
pages and a small script from the package, the graph laid out by dagre (shipped as a
static asset), everything the pages show read from a `RunStore` through a JSON API.
Needs the ``ui`` extra; nothing here is imported by the package itself. A tool: imports
the engine and everything below it, never the other tools (the command hands it its
loader; ``ui`` is its public face).
"""
