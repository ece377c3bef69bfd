"""A failed reply put back in the queue by staff, against a real relay on loopback: due at
once, its give-up clock restarted, recorded; only failed replies with their copy intact."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from privbot import pipeline
from privbot.app import App
from privbot.config import load_settings
from privbot.models import Event, Outgoing, utcnow
from privbot.outbox.queue import RetryError, retry_failed
from privbot.outbox.sender import Mailer
from testing.apps import mail, make_app, send_one
from testing.servers import CaptureRelay
from tests.cli.test_main import privbot


def _send_all(app: App, relay: CaptureRelay) -> None:
    smtp = load_settings({"PRIVBOT_SMTP_URL": relay.url}).smtp
    assert smtp is not None
    mailer = Mailer(smtp)
    try:
        while send_one(app, mailer):
            pass
    finally:
        mailer.close()


def _row(app: App, outbox_id: int) -> Outgoing:
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return row


def _refused_reply(app: App, relay: CaptureRelay, address: str) -> int:
    """A reply the relay refused for good (550 for its recipient): failed, for staff."""
    out = pipeline.receive(app, mail(sender=address), source="file")
    assert out.reply is not None
    relay.reject_rcpt(address, 550, "No such user here")
    _send_all(app, relay)
    row = _row(app, out.reply)
    assert row.status == "failed" and "550" in (row.last_error or "")
    return out.reply


def test_a_failed_reply_is_queued_again_and_delivered(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url)
    try:
        reply = _refused_reply(app, relay, "carl@example.org")
        first_queued = _row(app, reply).created_at
        relay.clear_faults()  # the cause is fixed (the mailbox exists now)
        with app.sessions.begin() as s:
            retry_failed(s, reply, actor="ada@junocloud.me")
        row = _row(app, reply)
        assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)
        assert row.next_attempt_at <= utcnow() and row.created_at > first_queued
        with app.sessions() as s:
            [event] = s.scalars(select(Event).where(Event.kind == "reply_retried")).all()
        assert event.actor == "ada@junocloud.me" and event.detail["outbox"] == reply
        assert event.detail["queued_at"] == first_queued.isoformat()
        assert "550" in event.detail["error"] and event.detail["attempts"] == 1
        _send_all(app, relay)
        assert _row(app, reply).status == "sent"
        assert [m["To"] for m in relay.wait_for(1)] == ["carl@example.org"]

        # Sent now: another retry is refused, as is a reply that does not exist.
        with pytest.raises(RetryError, match="is sent"), app.sessions.begin() as s:
            retry_failed(s, reply, actor="ada@junocloud.me")
        with pytest.raises(RetryError, match="no reply #999"), app.sessions.begin() as s:
            retry_failed(s, 999, actor="ada@junocloud.me")
    finally:
        app.close()


def test_a_reply_whose_copy_was_removed_is_never_sent_again(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url)
    try:
        reply = _refused_reply(app, relay, "dora@example.org")
        with app.sessions.begin() as s:  # the retention run replaced it by a placeholder
            s.execute(update(Outgoing).where(Outgoing.id == reply).values(redacted_at=utcnow()))
        with pytest.raises(RetryError, match="retention"), app.sessions.begin() as s:
            retry_failed(s, reply, actor="ada@junocloud.me")
        assert _row(app, reply).status == "failed"
    finally:
        app.close()


def test_privbot_outbox_retry(sqlite_url: str, relay: CaptureRelay) -> None:
    app = make_app(sqlite_url)
    try:
        reply = _refused_reply(app, relay, "erik@example.org")
    finally:
        app.close()
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    assert privbot("outbox", "retry", "--help").returncode == 0
    result = privbot("outbox", "retry", str(reply), "--as", "ada@junocloud.me", env=env)
    assert result.returncode == 0, result.stderr
    assert f"reply #{reply} to erik@example.org is back in the outbox queue" in result.stdout
    again = privbot("outbox", "retry", str(reply), env=env)
    assert again.returncode == 1 and "only a failed reply is retried" in again.stderr
    app = make_app(sqlite_url)
    try:
        assert _row(app, reply).status == "pending"
        with app.sessions() as s:
            event = s.scalar(select(Event).where(Event.kind == "reply_retried"))
            assert event is not None and event.actor == "ada@junocloud.me"
    finally:
        app.close()
