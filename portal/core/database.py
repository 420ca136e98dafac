"""Database plumbing that is not a model: SQLite pragmas, dialect questions."""

from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

_thread_state = threading.local()


def use_autocommit_in_this_thread(enabled: bool = True) -> None:
    """SQLite only: statements in this thread run without BEGIN, so reads hold no lock.

    For a test harness that inspects the database from its own thread while the app serves
    requests in others; app code never calls it (its units of work need real transactions).
    """
    _thread_state.autocommit = enabled


def install_sqlite_pragmas(app: Flask) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # We issue BEGIN ourselves (below), so pysqlite must not start transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the wait page read while a webhook writes; foreign keys are off by default in SQLite.
        if ":memory:" not in app.config["SQLALCHEMY_DATABASE_URI"]:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        if getattr(_thread_state, "autocommit", False):
            return
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another writer committed in between; IMMEDIATE waits for the lock instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine | None = None) -> bool:
    return (engine or db.engine).dialect.name == "postgresql"


def storable(text: str | None, limit: int | None = None) -> str | None:
    """Text PostgreSQL can keep: NUL is the one character a text column refuses (it becomes
    U+FFFD), cut to ``limit`` characters when given. Use it on any provider text we store."""
    if text is None:
        return None
    cleaned = text.replace("\x00", "\ufffd")
    return cleaned[:limit] if limit else cleaned
