"""The store contracts as reusable checks (exported by ``testing``): each case takes a
fresh store from the caller's factory and checks one promise of the protocol; the first
broken promise raises an `AssertionError` that names it. The same cases run in this
repository against the memory, SQLite and PostgreSQL stores, so a store of your own
(Redis, S3, ...) is held to exactly what the built-in ones are."""
