"""PostgreSQL as the shared stores keep it: DSNs shown without their password, schema
names checked, a server that cannot be reached or answers too slowly said so clearly
(on a real server the tests start)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from fixtures.postgres import fresh_schema, postgres
from twinklr.core.pipeline._base._postgresql import PostgresDatabase, checked_schema, redacted

__all__ = ["postgres"]  # (the fixture)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:s3cret@db.example:5432/shows", "postgresql://app@db.example:5432/shows"),
        (
            "postgresql://app@db/shows?password=s3cret&sslmode=require",
            "postgresql://app@db/shows?sslmode=require",
        ),
        (
            "postgresql:///shows?host=/run/pg&port=5433",
            "postgresql:///shows?host=/run/pg&port=5433",
        ),
        (
            "host=db user=app password=s3cret dbname=shows",
            "host=db user=app password=*** dbname=shows",
        ),
        ("host=db password='s3 cr\\'et' dbname=shows", "host=db password=*** dbname=shows"),
    ],
)
def test_a_dsn_is_shown_without_its_password(dsn: str, shown: str) -> None:
    assert redacted(dsn) == shown


def test_a_schema_is_a_plain_identifier() -> None:
    assert checked_schema("Store", "twinklr_2") == "twinklr_2"
    for bad in ("Twinklr", "a-b", "x; DROP TABLE y", "", 7):
        with pytest.raises(ValueError, match=r"Store schema must be a lower-case identifier"):
            checked_schema("Store", bad)


def database(dsn: str, **options: float) -> PostgresDatabase:
    settings = {"statement_timeout_s": 30.0, "connect_timeout_s": 2.0, **options}
    return PostgresDatabase(
        "Test",
        dsn,
        schema=fresh_schema(),
        component="test",
        migrations=["CREATE TABLE notes (id integer PRIMARY KEY, text text)"],
        max_connections=2,
        **settings,
    )


def test_a_server_that_cannot_be_reached_is_named_without_the_password(tmp_path: Path) -> None:
    dsn = f"postgresql://app:s3cret@/shows?host={tmp_path}&port=5999"
    with pytest.raises(ConnectionError) as refused:
        database(dsn).run(lambda conn: conn.execute("SELECT 1"))
    message = str(refused.value)
    assert message.startswith(f"cannot reach PostgreSQL at postgresql://app@/shows?host={tmp_path}")
    assert "s3cret" not in message


def test_tables_are_made_once_and_a_newer_version_is_refused(postgres: str) -> None:
    db = database(postgres)
    db.run(lambda conn: conn.execute("INSERT INTO notes VALUES (1, 'one')"))
    again = PostgresDatabase(
        "Test",
        postgres,
        schema=db.schema,
        component="test",
        migrations=db._migrations,
        statement_timeout_s=30,
        connect_timeout_s=2,
        max_connections=1,
    )
    assert again.run(lambda conn: conn.execute("SELECT text FROM notes").fetchall()) == [("one",)]
    older = PostgresDatabase(
        "Test",
        postgres,
        schema=db.schema,
        component="test",
        migrations=[],
        statement_timeout_s=30,
        connect_timeout_s=2,
        max_connections=1,
    )
    with pytest.raises(RuntimeError, match=r"at version 1, newer than this twinklr-pipeline knows"):
        older.run(lambda _conn: None)
    for each in (db, again, older):
        each.close()


def test_a_wedged_server_times_out_rather_than_hang(postgres: str) -> None:
    db = database(postgres, statement_timeout_s=0.5)
    db.run(lambda conn: conn.execute("SELECT 1"))  # (the tables made)
    with psycopg.connect(postgres) as locker:
        locker.execute(f"LOCK TABLE {db.schema}.notes IN ACCESS EXCLUSIVE MODE")
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"took over 0.5 s"):
            db.run(lambda conn: conn.execute("SELECT * FROM notes").fetchall())
        assert time.monotonic() - start < 5
    db.close()


def test_a_dropped_connection_is_replaced(postgres: str) -> None:
    db = database(postgres)
    pid = db.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert db.run(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
    db.close()
