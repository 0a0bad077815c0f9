"""The stores an executor is given by URL: ``postgresql://...`` builds the PostgreSQL
store of that kind (a plain path is still refused, with the call that makes a store
there)."""

from __future__ import annotations

from typing import Any

#: The schemes that name a PostgreSQL database.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and value.startswith(POSTGRES_SCHEMES)


def cache_from(value: Any) -> Any:
    """``value``, or the `PostgresCacheStore` its URL names."""
    if is_postgres_url(value):
        from .._cache._postgres import PostgresCacheStore  # noqa: PLC0415 (the extra's)

        return PostgresCacheStore(value)
    return value


def runs_from(value: Any) -> Any:
    """``value``, or the `PostgresRunStore` its URL names."""
    if is_postgres_url(value):
        from .._observe._postgres_runs import PostgresRunStore  # noqa: PLC0415

        return PostgresRunStore(value)
    return value
