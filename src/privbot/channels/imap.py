"""The IMAP watcher: take every message from the watched folder through the pipeline.

It never deletes mail. A message leaves the watched folder only after the pipeline has
committed what it did with it: handled (and screened, quarantined) mail is moved to the
processed folder, mail whose processing failed repeatedly to the failed folder. So after a
crash, whatever is still in the folder is simply fetched again, and the store's idempotency
key makes that harmless. Everything left in the folder is unfinished business, which is why
no custom keywords are needed (and pymap, for one, does not keep them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import socket
import threading
import zlib
from collections.abc import Iterator, Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import Integer

from privbot import pipeline
from privbot.app import App
from privbot.config import ImapSettings
from privbot.crashpoints import crash_point
from privbot.mail.oauth import LoginRefused, TokenError, TokenSource, imap_login

log = logging.getLogger(__name__)

# Messages fetched per command; they leave the folder as soon as their batch is done, so a
# crash repeats at most this many (already stored, so quickly recognised) messages.
FETCH_BATCH = 50
# After a drop: retry soon, then back off, but never wait long (recover within seconds).
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
DONE_STATUSES = frozenset({"handled", "screened", "quarantined"})
# After refused credentials (the OAuth token endpoint's 4xx, or a server's no to a fresh token):
# asking every few seconds would not fix them, and providers rate-limit.
AUTH_BACKOFF = 60.0


class ImapWatcher:
    """Watches one folder with IDLE (polling where the server has none) until stopped."""

    def __init__(self, app: App) -> None:
        if app.settings.imap is None:
            raise ValueError("PRIVBOT_IMAP_URL is not set")
        self.app = app
        self.imap: ImapSettings = app.settings.imap
        if self.imap.password is None and app.tokens is None:
            raise ValueError("PRIVBOT_IMAP_URL has no password, and OAuth is not configured")
        self.auth_backoff = AUTH_BACKOFF
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        # stop() may come from another thread just as run() ends and closes the pipe: the
        # lock keeps it from writing to a closed descriptor, or to a file given its number.
        self._wake_lock = threading.Lock()
        self._wake_open = True
        self.connected = threading.Event()  # for tests and the demo: the first sync is done
        self.online = threading.Event()  # logged in now (readiness: ops/health.py)
        self.uidvalidity: int | None = None
        self.claims = UidClaims(app.engine, self.imap.folder)

    def stop(self) -> None:
        self._stop.set()
        with self._wake_lock:
            if self._wake_open:
                os.write(self._wake_w, b"x")  # interrupt a select() in IDLE at once

    def run(self) -> None:
        """Connect, sync, idle; on any drop reconnect with backoff. Returns when stopped."""
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    with self._connect() as client:
                        self.online.set()
                        failures = 0
                        self._watch(client)
                except (OSError, IMAPClientError, EOFError, TokenError, LoginRefused) as exc:
                    # Includes imaplib's abort ("unterminated line", imapclient issue 519):
                    # the connection is unusable, so reconnect rather than die.
                    self.connected.clear()
                    self.online.clear()
                    self.app.metrics.imap_reconnects.inc()
                    delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                    failures += 1
                    if isinstance(exc, LoginRefused) or (
                        isinstance(exc, TokenError) and exc.refused
                    ):
                        delay = max(delay, self.auth_backoff)
                    if isinstance(exc, LoginRefused):
                        log.error("imap: %s; trying again in %.0fs", exc, delay)
                    elif isinstance(exc, TokenError):  # the token source logged why
                        log.warning("imap: no access token; trying again in %.1fs", delay)
                    else:
                        log.warning("imap: %s; reconnecting in %.1fs", _describe(exc), delay)
                    self._stop.wait(delay)
        finally:
            self.online.clear()
            self.claims.close()
            with self._wake_lock:
                self._wake_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _connect(self) -> IMAPClient:
        return connect(self.imap, tokens=self.app.tokens)

    def _watch(self, client: IMAPClient) -> None:
        s = self.app.settings
        delimiter = _delimiter(client)
        processed = s.processed_folder.replace("/", delimiter)
        failed = s.failed_folder.replace("/", delimiter)
        for folder in (processed, failed):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        info = client.select_folder(self.imap.folder)
        self._note_uidvalidity(int(info[b"UIDVALIDITY"]))
        can_idle = client.has_capability("IDLE")
        while not self._stop.is_set():
            # Search again until a round takes nothing: mail that arrived meanwhile was
            # announced in replies to our own commands, and IDLE will not announce it again.
            taken, left = self._sync(client, processed, failed)
            while taken and not self._stop.is_set():
                taken, left = self._sync(client, processed, failed)
            self.connected.set()
            # Something to retry soon: don't sleep a whole IDLE period on it.
            wait = 5.0 if left else (s.idle_seconds if can_idle else s.poll_seconds)
            if can_idle:
                self._idle(client, wait)
            else:
                self._sleep(wait)
                client.noop()

    def _sync(self, client: IMAPClient, processed: str, failed: str) -> tuple[int, int]:
        """Fetch and process everything in the folder: (messages moved out, messages left)."""
        uids = client.search("ALL")
        taken = left = 0
        batches = list(_chunks(uids, FETCH_BATCH))
        # Start at a random batch: on SQLite, where every process takes every UID, several
        # processes on one mailbox then mostly take different mail.
        start = random.randrange(len(batches)) if batches else 0
        assert self.uidvalidity is not None
        for batch in batches[start:] + batches[:start]:
            try:
                # Only what no other privbot process holds: each fetches and examines its own.
                mine = self.claims.take(self.uidvalidity, batch)
            except DBAPIError as exc:
                log.warning("imap: database unavailable (%s); leaving the folder", exc.orig)
                self.claims.close()
                self._stop.wait(2.0)
                return taken, left + len(batch)
            if not mine:
                continue
            try:
                done, bad, waiting = self._take(client, mine)
                left += waiting
                taken += len(done) + len(bad)
                _move(client, done, processed)
                _move(client, bad, failed)
            finally:
                self.claims.release(self.uidvalidity, mine)  # gone from the folder, or retried
            if self._stop.is_set():
                break
        return taken, left

    def _take(self, client: IMAPClient, uids: Sequence[int]) -> tuple[list[int], list[int], int]:
        fetched = client.fetch(uids, ["BODY.PEEK[]"])
        crash_point(self.app.settings, "after_fetch")
        done: list[int] = []
        bad: list[int] = []
        waiting = 0
        # Expunged meanwhile (another privbot took it): nothing to fetch, nothing to do.
        present = [u for u in uids if (fetched.get(u) or {}).get(b"BODY[]") is not None]
        items = [(fetched[u][b"BODY[]"], f"{self.uidvalidity}:{u}") for u in present]
        try:
            outcomes = pipeline.receive_batch(self.app, items, source="imap")
        except DBAPIError as exc:
            # Not all stored or done: the mail stays in the folder until the database is back.
            log.warning("imap: database unavailable (%s); leaving the batch", exc.orig)
            self._stop.wait(2.0)
            return done, bad, len(present)
        for uid, outcome in zip(present, outcomes, strict=True):
            if outcome.status in DONE_STATUSES:
                done.append(uid)
            elif outcome.status == "failed":
                bad.append(uid)
            else:
                waiting += 1
        return done, bad, waiting

    def _idle(self, client: IMAPClient, timeout: float) -> None:
        client.idle()
        try:
            # select() on the socket, then idle_done() in blocking mode: idle_check() can
            # read half a line on a non-blocking socket (imapclient issue 519).
            select.select([client.socket(), self._wake_r], [], [], timeout)
        finally:
            client.idle_done()

    def _sleep(self, timeout: float) -> None:
        select.select([self._wake_r], [], [], timeout)

    def _note_uidvalidity(self, value: int) -> None:
        if self.uidvalidity is not None and value != self.uidvalidity:
            # Old UIDs mean nothing now; the folder is re-read whole and the store's
            # idempotency key recognises anything already taken.
            log.warning("imap: UIDVALIDITY changed %s -> %s", self.uidvalidity, value)
        self.uidvalidity = value


class UidClaims:
    """Which of the folder's messages this process takes, decided in the database before
    fetching, so that several `privbot serve` on one mailbox divide the mail instead of
    all fetching and examining the same (issue 16).

    PostgreSQL: a session advisory lock per UID, keyed by the folder and its UIDVALIDITY,
    held on a connection of the watcher's own until the message has left the folder. A
    process that dies loses its connection and with it its claims, so nothing waits for a
    lease to run out. SQLite (one machine, one writer): every UID is taken, and the random
    first batch spreads the processes.
    """

    def __init__(self, engine: Engine, folder: str) -> None:
        self.engine = engine
        self.folder = folder
        self.shared = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    def take(self, uidvalidity: int, uids: Sequence[int]) -> list[int]:
        """The UIDs of `uids` now this process's (those no other process holds)."""
        if not self.shared or not uids:
            return list(uids)
        rows = self._connection().execute(_TAKE, self._params(uidvalidity, uids))
        return sorted(_unsigned(r[0]) for r in rows)

    def release(self, uidvalidity: int, uids: Sequence[int]) -> None:
        if not self.shared or not uids or self._conn is None:
            return
        try:
            self._conn.execute(_RELEASE, self._params(uidvalidity, uids))
        except DBAPIError:
            self.close()  # the connection is gone, and the server has released the claims

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None:
            # Out of the pool: closing it ends the session, which releases every claim (a
            # pooled connection would keep them for whoever takes it next). Autocommit: the
            # locks outlive transactions, and no transaction stays open.
            conn = self.engine.execution_options(isolation_level="AUTOCOMMIT").connect()
            conn.detach()
            self._conn = conn
        return self._conn

    def _params(self, uidvalidity: int, uids: Sequence[int]) -> dict[str, object]:
        # Two int4 keys: another key space than the one-bigint locks of migrations and the
        # daily staff mail. UIDs are unsigned 32-bit; int4 is signed.
        key = zlib.crc32(f"privbot-imap:{self.folder}:{uidvalidity}".encode())
        return {"k": _signed(key), "uids": [_signed(u) for u in uids]}


_UIDS = bindparam("uids", type_=ARRAY(Integer))
_TAKE = text("SELECT u FROM unnest(:uids) AS u WHERE pg_try_advisory_lock(:k, u)").bindparams(_UIDS)
_RELEASE = text("SELECT pg_advisory_unlock(:k, u) FROM unnest(:uids) AS u").bindparams(_UIDS)


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _unsigned(value: int) -> int:
    return value + (1 << 32) if value < 0 else value


def connect(s: ImapSettings, timeout: float = 60, tokens: TokenSource | None = None) -> IMAPClient:
    """A logged-in connection (the watcher's, and `privbot config check`'s): with the
    password, or without one by OAuth with an access token from `tokens` (app.tokens)."""
    if s.password is None and tokens is None:
        raise ValueError("PRIVBOT_IMAP_URL has no password, and OAuth is not configured")
    client = IMAPClient(s.host, s.port, ssl=s.ssl, timeout=timeout)
    # Without it APPEND/FETCH round trips stall on Nagle + delayed ACK (~40 ms each).
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if s.password is None:
            assert tokens is not None
            imap_login(client, s.user, tokens)
        else:
            client.login(s.user, s.password)
    except BaseException:
        client.shutdown()  # a refused login must not leave the connection open
        raise
    return client


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    if not uids:
        return
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.delete_messages(uids)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def _delimiter(client: IMAPClient) -> str:
    folders = client.list_folders(directory="", pattern="")
    if folders and folders[0][1]:
        value = folders[0][1]
        return value.decode() if isinstance(value, bytes) else str(value)
    return "/"


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
