"""The SQL a piece of privbot runs, and how each statement's database would execute it.

Used by the query-plan tests (a table that grows with the years must never be read whole
on the mail's hot path) and by the benchmark's growth section (the same plans on a
database of a million messages, both backends).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from privbot import pipeline
from privbot.app import App
from privbot.outbox.sender import Mailer, send_due
from testing.apps import mail

# Tables that grow with the mail: one row per message, reply, ticket or audit fact.
GROWING = ("messages", "outbox", "events", "tickets", "ticket_search", "suppressions")

_IN_LIST = re.compile(r"\((?:\?|%\(\w+\)s)(?:, ?(?:\?|%\(\w+\)s))+\)")
_SAVEPOINT = re.compile(r"(SAVEPOINT) \w+")


@dataclass
class Recorded:
    """Each distinct statement (IN lists of any length count as one) with its first
    parameters, in the order first seen."""

    statements: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def queries(self) -> list[tuple[str, Any]]:
        """The SELECT, UPDATE and DELETE statements: those a plan can show reading a table."""
        return [
            (sql, params)
            for sql, params in self.statements.values()
            if sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "WITH")
        ]


def shape(sql: str) -> str:
    """A statement's text with its IN lists and savepoint names folded, on one line."""
    return re.sub(r"\s+", " ", _SAVEPOINT.sub(r"\1 x", _IN_LIST.sub("(...)", sql))).strip()


@contextlib.contextmanager
def recording(engine: Engine) -> Iterator[Recorded]:
    """Record every statement `engine` runs inside the block."""
    out = Recorded()

    def before(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        if not many:
            out.statements.setdefault(shape(sql), (sql, params))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield out
    finally:
        event.remove(engine, "before_cursor_execute", before)


def sqlite_plan(engine: Engine, sql: str, params: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN lines for one recorded statement."""
    raw = engine.raw_connection()
    try:
        rows = raw.cursor().execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    finally:
        raw.close()
    return [str(row[-1]) for row in rows]


def postgres_plan(
    engine: Engine, sql: str, params: Any, *, analyze: bool = False, index_if_any: bool = False
) -> list[str]:
    """PostgreSQL's EXPLAIN lines for one recorded statement (ANALYZE: run it, and roll it
    back). `index_if_any`: seq scans off, so a Seq Scan left in the plan means that no
    index can serve the statement (on a small table the planner scans anyway)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if index_if_any:
            cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(("EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN ") + sql, params)
        lines = [str(row[0]) for row in cursor.fetchall()]
        raw.rollback()
    finally:
        raw.close()
    return lines


def plan(engine: Engine, sql: str, params: Any) -> list[str]:
    """The plan of one recorded statement on either backend, as a planner on a big table
    would choose it."""
    if engine.dialect.name == "sqlite":
        return sqlite_plan(engine, sql, params)
    return postgres_plan(engine, sql, params, index_if_any=True)


def whole_reads(lines: list[str], dialect: str) -> list[str]:
    """The plan's lines that read a growing table whole."""
    if dialect == "sqlite":
        pattern = re.compile(rf"^SCAN ({'|'.join(GROWING)})\b")
    else:
        pattern = re.compile(rf"Seq Scan on ({'|'.join(GROWING)})\b")
    return [line.strip() for line in lines if pattern.search(line.strip())]


TEXTS = (
    "Please unsubscribe me from your newsletter.",
    "I would like a copy of all the personal data you hold about me.",
    "Please delete my account and all my data.",
    "How long do you keep my data?",
)


def _letters(tag: str, count: int) -> list[tuple[bytes, str]]:
    return [
        (mail(sender=f"p{tag}{i}@example.org", subject=f"Request {i}", body=TEXTS[i % 4],
              message_id=f"{tag}{i}@example.org"), f"1:{tag}{i}")
        for i in range(count)
    ]  # fmt: skip


def _follow_ups(tag: str, refs: list[str]) -> list[tuple[bytes, str]]:
    """Replies to `refs`: our replies' Message-IDs, or the person's own earlier mail's."""
    return [
        (mail(sender="pw0@example.org", subject="Re: Request 0", body="Thank you, and also "
              "stop the newsletter.", headers={"In-Reply-To": ref, "References": ref}),
         f"1:{tag}f{n}")
        for n, ref in enumerate(refs)
    ]  # fmt: skip


def serve_round(app: App, tag: str, refs: list[str]) -> None:
    """One round of what `privbot serve`'s threads do: store and handle 12 new mails and
    the follow-ups to `refs`, take leftovers, send every due reply (to PRIVBOT_SMTP_URL)."""
    pipeline.receive_batch(app, _letters(tag, 12), source="imap")
    pipeline.receive_batch(app, _follow_ups(tag, refs), source="imap")
    app.classifier.refresh(app.sessions)
    pipeline.process_pending(app)
    assert app.settings.smtp is not None
    mailer = Mailer(app.settings.smtp)
    try:
        while send_due(app, mailer):
            pass
    finally:
        mailer.close()
