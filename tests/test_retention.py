"""The retention policy: personal content goes after its days, the audit facts stay; new
SQLite files and the sent log are private to their owner."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from privbot import pipeline, retention
from privbot.app import App
from privbot.config import ConfigError, load_settings
from privbot.models import (
    ChatRequest,
    Event,
    LoginFailure,
    Message,
    Outgoing,
    Ticket,
    utcnow,
)
from privbot.serve import Service
from privbot.staff import views
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port
from tests.cli.test_main import privbot

DELETE = "Hello,\n\nplease delete my account and all my personal data: {secret}.\n\nThanks\n"
NOTE_365 = "[removed after 365 days under the retention policy]"


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    app = make_app(db_url)
    try:
        yield app
    finally:
        app.close()


def _ticket(app: App, sender: str, secret: str, *, closed_days_ago: float | None) -> int:
    """A deletion request's ticket with its reply sent; closed (rejected) so long ago, or
    open. Rejected: a done one's person is erased after its hold instead (test_erasure.py)."""
    body = DELETE.format(secret=secret)
    outcome = pipeline.receive(app, mail(sender=sender, subject=secret, body=body), source="file")
    assert outcome.ticket is not None and outcome.reply is not None, outcome
    now = utcnow()
    with app.sessions.begin() as s:
        closed = None if closed_days_ago is None else now - timedelta(days=closed_days_ago)
        s.execute(
            update(Ticket)
            .where(Ticket.id == outcome.ticket)
            .values(
                status="rejected" if closed else "open",
                closed_at=closed,
                created_at=now - timedelta(days=500),
            )
        )
        s.execute(update(Outgoing).where(Outgoing.id == outcome.reply).values(status="sent"))
    return outcome.ticket


def _raw(app: App, ticket: int) -> tuple[list[bytes], list[bytes]]:
    with app.sessions() as s:
        inbound = list(s.scalars(select(Message.raw).where(Message.ticket_id == ticket)))
        outbound = list(s.scalars(select(Outgoing.raw).where(Outgoing.ticket_id == ticket)))
    return inbound, outbound


def _chat(session: object, *, days_ago: float, status: str, nonce: str) -> None:
    session.add(  # type: ignore[attr-defined]
        ChatRequest(
            session="s" * 24,
            text=f"delete me {nonce}",
            intents=["deletion"],
            nonce=nonce,
            status=status,
            client="203.0.113.9",
            created_at=utcnow() - timedelta(days=days_ago),
        )
    )


def test_old_closed_tickets_are_redacted_and_the_rest_untouched(app: App) -> None:
    old = _ticket(app, "old@example.org", "SECRET-OLD", closed_days_ago=400)
    recent = _ticket(app, "recent@example.org", "SECRET-RECENT", closed_days_ago=10)
    still_open = _ticket(app, "open@example.org", "SECRET-OPEN", closed_days_ago=None)
    with app.sessions() as s:
        kinds_before = list(s.scalars(select(Event.kind).where(Event.ticket_id == old)))

    report = retention.run(app)

    assert report.messages_redacted == 1 and report.replies_redacted == 1
    assert report.tickets_redacted == 1
    inbound, outbound = _raw(app, old)
    assert all(b"SECRET-OLD" not in raw for raw in inbound + outbound)
    for ticket, secret in ((recent, b"SECRET-RECENT"), (still_open, b"SECRET-OPEN")):
        inbound, outbound = _raw(app, ticket)
        assert all(secret in raw for raw in inbound), ticket
        assert outbound and all(b"delete" in raw.lower() for raw in outbound), ticket
    # The page still renders, with the placeholder where the words were.
    detail = views.ticket_detail(app, old)
    assert detail is not None
    assert detail["subject"] == NOTE_365
    assert [m["text"].strip() for m in detail["thread"]] == [NOTE_365, NOTE_365]
    assert all(m["subject"] == NOTE_365 for m in detail["thread"])
    assert detail["thread"][0]["from"] == "old@example.org"
    assert detail["type"] == "deletion" and detail["closed_at"]
    # The audit facts stay, and the run is one more event, with counts and no content.
    with app.sessions() as s:
        kinds_after = list(s.scalars(select(Event.kind).where(Event.ticket_id == old)))
        run_events = list(s.scalars(select(Event).where(Event.kind == "retention_run")))
        subjects = dict(s.execute(select(Ticket.id, Ticket.subject)).all())
    assert kinds_after == kinds_before
    assert subjects[recent] == "SECRET-RECENT" and subjects[still_open] == "SECRET-OPEN"
    assert len(run_events) == 1
    detail_json = run_events[0].detail
    assert detail_json["messages_redacted"] == 1 and detail_json["retain_closed_days"] == 365
    assert "SECRET" not in repr(detail_json)

    # A second run finds nothing more to do, and says so.
    again = retention.run(app)
    assert again == retention.RetentionReport()


def test_unconfirmed_chat_requests_and_signin_failures_go_after_their_days(app: App) -> None:
    now = utcnow()
    with app.sessions.begin() as s:
        _chat(s, days_ago=8, status="link_sent", nonce="old-unconfirmed")
        _chat(s, days_ago=8, status="awaiting_address", nonce="old-no-address")
        _chat(s, days_ago=1, status="link_sent", nonce="recent-unconfirmed")
        _chat(s, days_ago=8, status="confirmed", nonce="old-confirmed")
        s.add_all([
            LoginFailure(key="client:203.0.113.9", at=now - timedelta(days=31)),
            LoginFailure(key="client:203.0.113.9", at=now - timedelta(days=2)),
        ])  # fmt: skip

        for days, ident in ((8, "old"), (1, "recent")):
            s.add(Outgoing(message_id=f"confirm-{ident}@junocloud.me", to_addr="v@example.org",
                           subject="Confirm", raw=b"Subject: Confirm\n\nhttps://x/confirm/TOKEN",
                           kind="confirm", status="sent",
                           created_at=now - timedelta(days=days)))  # fmt: skip

    report = retention.run(app)

    assert report.chat_requests_deleted == 2 and report.signin_failures_deleted == 1
    # The mailed confirmation link (address, link) matters for a day; after the chat days
    # only a placeholder is left.
    assert report.replies_redacted == 1
    with app.sessions() as s:
        links = dict(s.execute(select(Outgoing.message_id, Outgoing.raw)).all())
    assert b"TOKEN" not in links["confirm-old@junocloud.me"]
    assert b"TOKEN" in links["confirm-recent@junocloud.me"]
    with app.sessions() as s:
        chats = {c.nonce: c.client for c in s.scalars(select(ChatRequest))}
        failures = list(s.scalars(select(LoginFailure.at)))
    # The confirmed request is a fact (it became a ticket); its client IP is not needed.
    assert chats == {"recent-unconfirmed": "203.0.113.9", "old-confirmed": None}
    assert len(failures) == 1 and failures[0] > now - timedelta(days=3)


def test_retention_days_are_settings(db_url: str) -> None:
    app = make_app(db_url, RETAIN_CLOSED_DAYS="5", RETAIN_CHAT_DAYS="2")
    try:
        ticket = _ticket(app, "five@example.org", "SECRET-FIVE", closed_days_ago=6)
        report = retention.run(app)
        assert report.messages_redacted == 1
        inbound, _ = _raw(app, ticket)
        assert b"[removed after 5 days under the retention policy]" in inbound[0]
    finally:
        app.close()


def test_privbot_retention_run_prints_what_it_did(db_url: str) -> None:
    app = make_app(db_url)
    try:
        _ticket(app, "old@example.org", "SECRET-OLD", closed_days_ago=400)
    finally:
        app.close()
    result = privbot("retention", "run", env={"PRIVBOT_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert "messages redacted: 1" in result.stdout and "replies redacted: 1" in result.stdout
    assert privbot("retention", "run", "--help").returncode == 0


def test_serve_runs_retention_at_start(sqlite_url: str) -> None:
    app = make_app(sqlite_url, WEB=f"127.0.0.1:{free_port()}")
    service = Service(app).start()
    try:
        names = {t.name for t in service.threads}
        assert "privbot-retention" in names

        def ran() -> bool:
            with app.sessions() as s:
                return s.scalar(select(Event.id).where(Event.kind == "retention_run")) is not None

        wait_until(ran, what="the retention run at start")
    finally:
        service.stop()
        app.close()
    assert not any(t.is_alive() for t in service.threads if t.name == "privbot-retention")


def test_sqlite_file_and_sent_log_are_created_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, under which files come out 0644
    try:
        url = f"sqlite:///{tmp_path / 'privbot.db'}"
        app = make_app(url)
        try:
            pipeline.receive(app, mail(), source="file")  # writes, so the WAL exists
            assert app.sent_log is not None
            app.sent_log.note(1, utcnow())
            files = [tmp_path / "privbot.db", tmp_path / "privbot.db-wal", app.sent_log.path]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        finally:
            app.close()
    finally:
        os.umask(previous)
    assert modes == {name: 0o600 for name in modes}, modes


def test_retention_worker_stops_when_told(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    stop = threading.Event()
    worker = threading.Thread(target=retention.run_daily, args=(app, stop))
    try:
        worker.start()
        stop.set()
        worker.join(timeout=10)
        assert not worker.is_alive()
    finally:
        app.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [("RETAIN_CLOSED_DAYS", "0"), ("RETAIN_CHAT_DAYS", "1"), ("RETAIN_SIGNIN_DAYS", "a month")],
)
def test_retention_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"PRIVBOT_{name}"):
        load_settings({f"PRIVBOT_{name}": value})
