"""The staff queue against a large database: bulk-loaded tickets and messages, timed queries.

The rows are written straight into the tables privbot's migrations create (multi-row
``executemany`` for SQLite, ``COPY`` for PostgreSQL), never through the pipeline: a million
messages through the pipeline would take hours and measure something else.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.harness import bar, summary
from privbot import db, search
from privbot.cli import listings
from privbot.staff import auth, views
from privbot.web.server import WebServer
from testing.apps import make_app

TYPES = ("access", "correction", "deletion", "other", "opt_out", "question")
STATUSES = ("open", "awaiting_identity", "done", "in_progress")


def _start(tickets: int, messages: int) -> datetime:
    """The first row's date: the rows end two days ago, all of them younger than any
    retention period, as the mail of a site whose retention runs daily (older mail would
    be redacted by the first `privbot serve` of a run, and measured with it)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2, seconds=max(messages * 10, tickets * 97) + 10)


# Columns written per table (every NOT NULL one; the rest stay NULL).
COLUMNS: dict[str, tuple[str, ...]] = {
    "tickets": ("id", "type", "status", "requester", "subject", "intents", "language",
                "created_at", "updated_at", "due_at", "closed_at"),
    "messages": ("id", "idem_key", "message_id", "source", "source_ref", "received_at", "size",
                 "raw", "status", "reason", "attempts", "sender", "subject", "ticket_id",
                 "processed_at"),
    "events": ("id", "at", "actor", "kind", "ticket_id", "message_id", "detail"),
    "outbox": ("id", "message_id", "ticket_id", "reply_to_message", "in_reply_to", "to_addr",
               "to_key", "to_domain", "subject", "raw", "kind", "status", "attempts",
               "next_attempt_at", "created_at", "sent_at"),
    "ticket_search": ("ticket_id", "head", "body"),
}  # fmt: skip
# Words that make searches of every breadth: a city is in 1 ticket of 100, an order
# number in a few, "delete" in all of them.
CITIES = tuple(f"{name}{n}" if n else name for n in range(2) for name in (
    "Leeds", "Lyon", "Porto", "Gent", "Graz", "Bern", "Turku", "Aarhus", "Brno", "Cluj",
    "Bilbao", "Bari", "Malmo", "Utrecht", "Dublin", "Krakow", "Sevilla", "Nantes", "Essen",
    "Basel", "Tampere", "Odense", "Ostrava", "Iasi", "Girona", "Parma", "Lund", "Delft",
    "Cork", "Gdansk", "Murcia", "Lille", "Bonn", "Linz", "Espoo", "Aalborg", "Plzen", "Arad",
    "Vigo", "Pisa", "Umea", "Leiden", "Galway", "Lodz", "Cadiz", "Reims", "Kiel", "Wels",
    "Oulu", "Vejle",
))  # fmt: skip


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


def _text(i: int) -> str:
    """What the person wrote in message `i` (above their sign-off)."""
    return (
        f"Hello,\r\n\r\nplease tell me what you store about me and delete my account {i}.\r\n"
        f"I live in {CITIES[i % len(CITIES)]}; my order was ord{i * 7919 % 20_000}.\r\n"
    )


def _raw(i: int, sender: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: support@junocloud.me\r\nSubject: {subject}\r\n"
        f"Message-ID: <m{i}@example.org>\r\nDate: Mon, 3 Nov 2025 09:00:00 +0000\r\n\r\n"
        f"{_text(i)}Thank you,\r\nA customer\r\n"
    ).encode()


def generate(tickets: int, messages: int) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(table, row) with naive UTC datetimes; 40% of messages belong to a ticket."""
    rng = random.Random(6)
    start = _start(tickets, messages)
    for t in range(1, tickets + 1):
        created = start + timedelta(seconds=t * 97)
        closed = created + timedelta(days=3) if t % 3 == 0 else None
        yield "tickets", (
            t, TYPES[t % len(TYPES)], "done" if closed else STATUSES[t % 2],
            f"person{t}@example.org", f"My data, request {t}", json.dumps([TYPES[t % 6]]),
            "en", _naive(created), _naive(created), _naive(created + timedelta(days=30)),
            _naive(closed) if closed else None,
        )  # fmt: skip
    threaded = int(messages * 0.4)
    event_id = 0
    for m in range(1, messages + 1):
        ticket = (m - 1) % tickets + 1 if m <= threaded else None
        sender = f"person{ticket or m}@example.org"
        subject = f"My data, request {ticket}" if ticket else "Delivery Status Notification"
        at = _naive(start + timedelta(seconds=m * 10 + rng.randint(0, 9)))
        raw = _raw(m, sender, subject)
        yield "messages", (
            m, f"{m:064x}", f"<m{m}@example.org>", "imap", f"1:{m}", at, len(raw), raw,
            "handled" if ticket else "screened", None if ticket else "bounce: delivery report",
            1, sender, subject, ticket, at,
        )  # fmt: skip
        if ticket:
            for kind in ("classified", "reply_queued") if m > tickets else ("ticket_opened",):
                event_id += 1
                detail = json.dumps({"intents": [TYPES[ticket % 6]], "confidence": 0.9})
                yield "events", (event_id, at, "privbot", kind, ticket, m, detail)
    for t in range(1, tickets + 1):
        at = _naive(start + timedelta(seconds=t * 97 + 1))
        reply = f"Subject: Re: My data [JC-{t}]\r\n\r\n{'We have your request. ' * 40}".encode()
        yield "outbox", (
            t, f"<r{t}@junocloud.me>", t, t, f"<m{t}@example.org>", f"person{t}@example.org",
            f"person{t}@example.org", "example.org", f"Re: My data, request {t} [JC-{t}]", reply,
            "auto", "sent", 1, at, at, at,
        )  # fmt: skip
    for t in range(1, tickets + 1):
        # The row privbot.search writes: the ticket's words and those of its messages.
        body = ""
        for m in range(t, threaded + 1, tickets):
            body = search.with_text(body, _text(m))
        head = search.head_of(f"My data, request {t}", f"person{t}@example.org")
        yield "ticket_search", (t, head, body)


def _batches(tickets: int, messages: int, size: int = 5000) -> Iterator[tuple[str, list[Any]]]:
    current, rows = "", []
    for table, row in generate(tickets, messages):
        if table != current or len(rows) >= size:
            if rows:
                yield current, rows
            current, rows = table, []
        rows.append(row)
    if rows:
        yield current, rows


def _kept(table: str, present: set[str]) -> tuple[list[str], list[int]]:
    """The generated columns the migrated table has, and their places in a row: an older
    checkout's schema (`--before`) lacks the newer columns."""
    keep = [i for i, c in enumerate(COLUMNS[table]) if c in present]
    return [COLUMNS[table][i] for i in keep], keep


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def migrate_here(url: str) -> None:
    """The schema by this checkout's migrations."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()


def load_sqlite(
    path: Path, tickets: int, messages: int, migrate: Callable[[str], None] = migrate_here
) -> float:
    """Schema by privbot's migrations (`migrate`: another checkout's), rows by executemany;
    plain indexes rebuilt after."""
    migrate(f"sqlite:///{path}")
    if not messages:
        return 0.0
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        schema = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in COLUMNS}
        conn.execute("BEGIN")
        with bar(tickets + messages, "queue: load SQLite", "row") as pbar:
            for table, rows in _batches(tickets, messages):
                cols, keep = _kept(table, schema[table])
                marks = ", ".join("?" * len(cols))
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                    [tuple(_sqlite_value(row[i]) for i in keep) for row in rows],
                )
                if table in ("tickets", "messages"):
                    pbar.update(len(rows))
        conn.execute("COMMIT")
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.monotonic() - started


def load_postgres(
    url: str,
    conninfo: str,
    tickets: int,
    messages: int,
    migrate: Callable[[str], None] = migrate_here,
) -> float:
    """Schema by privbot's migrations (`migrate`: another checkout's), rows by COPY; plain
    indexes rebuilt after."""
    migrate(url)
    if not messages:
        return 0.0
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with (
            bar(tickets + messages, "queue: load PostgreSQL", "row") as pbar,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            # The foreign-key triggers fire per row under COPY (about 5k rows/s here); the
            # generated rows are consistent, so skip them where we may (superuser only).
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
            schema = {
                t: {r[0] for r in conn.execute("SELECT column_name FROM information_schema."
                                               "columns WHERE table_name = %s", (t,))}
                for t in COLUMNS
            }  # fmt: skip
            for table, rows in _batches(tickets, messages, 20000):
                cols, keep = _kept(table, schema[table])
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[i] for i in keep])
                if table in ("tickets", "messages"):
                    pbar.update(len(rows))
        for _, sql in indexes:
            conn.execute(sql)
        for table in (t for t in COLUMNS if "id" in COLUMNS[t]):
            # Keep the sequences ahead of the loaded ids, as if the rows had been inserted.
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # the first call warms caches and compiles the statements
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def time_queries(db_url: str, tickets: int, repeats: int) -> dict[str, Any]:
    app = make_app(db_url)
    rng = random.Random(7)
    try:
        ids = [rng.randint(1, tickets) for _ in range(repeats + 1)]
        pick = iter(ids * 2)
        return {
            "queue_page_50": summary(_time(lambda: listings.tickets(app, limit=50), repeats)),
            "queue_1000": summary(_time(lambda: listings.tickets(app, limit=1000), repeats // 4)),
            "ticket_page": summary(_time(lambda: views.ticket_detail(app, next(pick)), repeats)),
        }
    finally:
        app.close()


STAFF = ("staff@junocloud.me", "bench-password-1234")


def time_web(db_url: str, tickets: int, repeats: int) -> dict[str, Any] | None:
    """privbot's own staff pages over HTTP (uvicorn on loopback, httpx)."""
    app = make_app(db_url, secret_key="bench-secret-key-not-for-production")
    server: WebServer | None = None
    try:
        with app.sessions.begin() as session:
            auth.add_staff(session, STAFF[0], STAFF[1], actor="bench")
        server = WebServer(app, "127.0.0.1", 0).start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        rng = random.Random(8)
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            if csrf is None:
                raise RuntimeError(f"no CSRF token on /login ({form.status_code})")
            done = client.post(
                "/login",
                data={"email": STAFF[0], "password": STAFF[1], "csrf": csrf.group(1)},
            )
            if done.status_code != 303:
                raise RuntimeError(f"staff login failed: {done.status_code}")

            def get(path: Callable[[], str]) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(path())
                    if response.status_code != 200:
                        raise RuntimeError(f"GET {response.url}: {response.status_code}")
                    return response.content

                return call

            return {
                # A static file: what any page with a body costs over this HTTP stack.
                "web_static": summary(_time(get(lambda: "/static/style.css"), repeats // 4)),
                "web_queue": summary(_time(get(lambda: "/queue"), repeats)),
                "web_queue_search": summary(
                    _time(get(lambda: f"/queue?q=person{rng.randint(1, tickets)}"), repeats // 4)
                ),
                "web_ticket": summary(
                    _time(get(lambda: f"/tickets/{rng.randint(1, tickets)}"), repeats)
                ),
            }
    finally:
        if server is not None:
            server.stop()
        app.close()


def searches(tickets: int) -> list[tuple[str, Callable[[int], str]]]:
    """What staff type into the search box, from one ticket to every ticket matching; each
    gets a random ticket number n. Tickets whose number divides by 3 are closed."""
    return [
        ("reference JC-n", lambda n: f"JC-{n}"),
        ("bare number n (reference or word)", lambda n: str(n)),
        ("address", lambda n: f"person{n}@example.org"),
        ("word of a closed ticket's body", lambda n: f"account {n - n % 3 or 3}"),
        ("order number (a few tickets)", lambda n: f"ord{n * 7919 % 20_000}"),
        ("city (1 ticket in 100)", lambda n: CITIES[n % len(CITIES)]),
        ("beginning of a word (city)", lambda n: CITIES[n % len(CITIES)][:4]),
        ("two words (city, every ticket)", lambda n: f"{CITIES[n % len(CITIES)]} delete"),
        ("word in every ticket", lambda n: "delete"),
        ("no match", lambda n: f"zq{n}x"),
    ]


def time_search(db_url: str, tickets: int, repeats: int) -> dict[str, Any]:
    """Search as staff use it: privbot.staff.views.queue, and GET /queue?q=... over HTTP."""
    app = make_app(db_url)
    rng = random.Random(9)
    kinds = searches(tickets)
    out: dict[str, Any] = {"core": {}, "web": {}}
    try:
        for name, make in kinds:
            queries = [make(rng.randint(1, tickets)) for _ in range(repeats + 1)]
            pick = iter(queries)
            out["core"][name] = summary(
                _time(lambda p=pick: views.queue(app, views.QueueFilter(q=next(p))), repeats)  # type: ignore[misc]
            )
            out["core"][name]["matched"] = views.queue(app, views.QueueFilter(q=queries[0]))[
                "total"
            ]
    finally:
        app.close()
    with _signed_in(db_url) as client:
        samples: list[float] = []
        for name, make in kinds:
            queries = [make(rng.randint(1, tickets)) for _ in range(repeats + 1)]
            pick = iter(queries)

            def get(pick: Iterator[str] = pick) -> object:
                response = client.get("/queue", params={"q": next(pick)})
                if response.status_code != 200:
                    raise RuntimeError(f"GET {response.url}: {response.status_code}")
                return response.content

            times = _time(get, repeats)
            samples += times
            out["web"][name] = summary(times)
        out["web_all"] = summary(samples)
    return out


@contextlib.contextmanager
def _signed_in(db_url: str) -> Iterator[httpx.Client]:
    """privbot's web app on loopback with a staff member signed in."""
    app = make_app(db_url, secret_key="bench-secret-key-not-for-production")
    server: WebServer | None = None
    try:
        with app.sessions.begin() as session:
            if auth.find_active(session, STAFF[0]) is None:
                auth.add_staff(session, STAFF[0], STAFF[1], actor="bench")
        server = WebServer(app, "127.0.0.1", 0).start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            if csrf is None:
                raise RuntimeError(f"no CSRF token on /login ({form.status_code})")
            done = client.post(
                "/login", data={"email": STAFF[0], "password": STAFF[1], "csrf": csrf.group(1)}
            )
            if done.status_code != 303:
                raise RuntimeError(f"staff login failed: {done.status_code}")
            yield client
    finally:
        if server is not None:
            server.stop()
        app.close()
