"""The mail's hot path never reads a growing table whole (issue 16).

Every message, reply, ticket and audit fact stays for years, so a statement that scans one
of those tables makes privbot slower every month. This runs the work of `privbot serve`
(store, examine, act, thread a follow-up, send the replies, look for leftovers) on SQLite
with table statistics, as `ANALYZE` or `PRAGMA optimize` leave them: a planner then knows
that almost every reply is `sent`, which is what turned the outbox claim into a scan.
"""

from __future__ import annotations

from sqlalchemy import select, text

from privbot.app import App
from privbot.models import Outgoing
from testing.apps import make_app
from testing.servers import CaptureRelay
from testing.statements import Recorded, plan, recording, serve_round, whole_reads


def _recorded(db_url: str, relay: CaptureRelay) -> tuple[App, Recorded]:
    app = make_app(db_url, smtp_url=relay.url, reply_cap_per_domain="100000")
    serve_round(app, "w", [])  # rows in every table, every reply sent
    with app.sessions.begin() as session:
        ours = session.scalars(select(Outgoing.message_id).order_by(Outgoing.id)).all()[:2]
        session.execute(text("ANALYZE"))
    app.engine.dispose()  # new connections read the statistics
    with recording(app.engine) as recorded:
        # Threading both ways: a reply to our reply, and to the person's own first mail.
        serve_round(app, "r", [f"<{m}>" for m in ours] + ["<w1@example.org>"])
    return app, recorded


def test_the_hot_path_reads_no_growing_table_whole(db_url: str, relay: CaptureRelay) -> None:
    app, recorded = _recorded(db_url, relay)
    try:
        queries = recorded.queries()
        sql_text = " ".join(sql for sql, _ in queries)
        # The parts this must cover did run: threading, the outbox claims, the leftovers.
        for part in (
            "outbox.message_id IN",
            "messages.message_id IN",
            "outbox.lease_until <",
            "outbox.next_attempt_at <=",
            "messages.source !=",
            "messages.idem_key IN",
        ):
            assert part in sql_text, part
        dialect = app.engine.dialect.name
        scans = {
            sql[:160]: reads
            for sql, params in queries
            if (reads := whole_reads(plan(app.engine, sql, params), dialect))
        }
        assert scans == {}
        assert len(relay.messages) >= 20  # the replies really went out
    finally:
        app.close()


def test_the_outbox_claims_search_unsent_replies_only(sqlite_url: str, relay: CaptureRelay) -> None:
    """With statistics that say nearly every reply is sent, a claim that an OR or a bound
    status hid from the indexes read them all (60 ms a claim at 100,000 replies)."""
    app, recorded = _recorded(sqlite_url, relay)
    try:
        claims = [
            " ".join(plan(app.engine, sql, params))
            for sql, params in recorded.queries()
            if sql.lstrip().startswith("SELECT outbox.id")
            and ("outbox.next_attempt_at <=" in sql or "outbox.lease_until <" in sql)
        ]
        assert len(claims) >= 2
        assert all(c.startswith("SEARCH outbox USING INDEX") for c in claims), claims
    finally:
        app.close()


def test_the_reply_caps_count_in_their_own_indexes(sqlite_url: str, relay: CaptureRelay) -> None:
    """LIKE patterns over the address read every reply of the window to anyone, twice per
    reply: a busy day made each reply dearer. Each count is now an index range of one
    mailbox's or one domain's automatic replies."""
    app, recorded = _recorded(sqlite_url, relay)
    try:
        counts = {
            column: [" ".join(plan(app.engine, sql, params))
                     for sql, params in recorded.queries() if f"outbox.{column} =" in sql]
            for column in ("to_key", "to_domain")
        }  # fmt: skip
        assert counts["to_key"] and counts["to_domain"]
        for column, plans in counts.items():
            index = {"to_key": "ix_outbox_counted_key", "to_domain": "ix_outbox_counted_domain"}
            search = (f"SEARCH outbox USING COVERING INDEX {index[column]} ({column}=? AND "
                      "kind=? AND created_at>?)")  # fmt: skip
            assert all(search in p and "SCAN outbox" not in p for p in plans), plans
    finally:
        app.close()
