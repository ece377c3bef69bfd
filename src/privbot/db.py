"""The database: engine with the right per-backend settings, sessions, and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant will do: it only has to be the same in every privbot process.
_MIGRATION_LOCK = 7_311_042


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, write transactions taken up front) or PostgreSQL.

    Parameters are hidden: a database error's text would otherwise carry the values of its
    statement (a chat message, a subject, a quoted change) into every log that reports it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _create_private(parsed.database or "")
        factory = _locked_connection_class()
        engine = create_engine(
            url, connect_args={"timeout": 30, "factory": factory}, hide_parameters=True
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        _serialise_writers(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)


def _create_private(name: str) -> None:
    """Create a new SQLite file as 0600: it holds people's mail. SQLite gives its -wal and
    -shm files the database file's mode. An existing file is left as its owner set it."""
    if name in ("", ":memory:") or name.startswith("file:"):
        return
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # e.g. a missing folder: sqlite3 reports it with its own words


def _serialise_writers(engine: Engine) -> None:
    """One transaction at a time per process, queued in Python.

    BEGIN IMMEDIATE takes SQLite's write lock up front (a deferred transaction that later
    writes can fail at once with "database is locked"). Threads of one process queue on a
    lock of our own first: SQLite's busy handler would make them poll with sleeps of up to
    100 ms, and the outbox marking a reply sent would starve behind the watcher. The lock
    is released only once COMMIT or ROLLBACK has really happened (see LockedConnection).
    """

    def begin(conn: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        dbapi.take_write_lock()
        try:
            if conn.get_execution_options().get(DURABLE):
                dbapi.sync_next_commit()
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi.drop_write_lock()
            raise

    event.listen(engine, "begin", begin)


def _locked_connection_class() -> type[sqlite3.Connection]:
    lock = threading.Lock()

    class LockedConnection(sqlite3.Connection):
        holds = False
        full_sync = False

        def sync_next_commit(self) -> None:
            # Only outside a transaction may the safety level change.
            self.execute("PRAGMA synchronous=FULL")
            self.full_sync = True

        def take_write_lock(self) -> None:
            lock.acquire()
            self.holds = True

        def drop_write_lock(self) -> None:
            if self.full_sync:
                self.full_sync = False
                self.execute("PRAGMA synchronous=NORMAL")
            if self.holds:
                self.holds = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self.drop_write_lock()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self.drop_write_lock()

        def close(self) -> None:
            self.full_sync = False  # nothing to reset on a closed connection
            try:
                super().close()
            finally:
                self.drop_write_lock()

    return LockedConnection


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" event emit BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL survives any crash of privbot; a power cut may lose the last commits.
    # Commits that others rely on (a stored message before SMTP's 250, a reply claimed
    # before it is sent) ask for FULL through `durably` and are on disk first.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


DURABLE = "privbot_durable"


def durably(session: Session) -> Session:
    """Make this session's transaction reach the disk at COMMIT, also on SQLite.

    Call before the first statement. Writes earlier in the WAL go to disk with it, so the
    transactions before it are durable too. PostgreSQL commits are durable already.
    """
    session.connection(execution_options={DURABLE: True})
    return session


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine) -> None:
    """Apply every pending migration; safe when several processes start at once."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration revision, the newest this code has); None: not migrated."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def like_escape(text: str) -> str:
    """Text to search for with LIKE ... ESCAPE '\\': its own % and _ match only themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
