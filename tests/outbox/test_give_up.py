"""A long relay outage, against real SMTP on loopback: replies are retried until
PRIVBOT_SEND_GIVE_UP_HOURS, then become `failed` with the reason, shown to staff; nothing
waits forever, and the rest go as soon as the relay takes mail again."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.cli.main import main
from privbot.config import ConfigError, Settings, load_settings
from privbot.models import Event, Outgoing, utcnow
from privbot.outbox import sender
from privbot.web import create_app
from testing.apps import mail, make_app, send_one, wait_until
from testing.servers import CaptureRelay, free_port
from tests.web.conftest import add_staff, login

# Long enough for a relay to start (the young reply must outlive that), short for a test.
GIVE_UP_SECONDS = 2.5


def _give_up_hours(seconds: float) -> str:
    return str(seconds / 3600)


def _queue(app: App, sender_addr: str) -> int:
    out = pipeline.receive(app, mail(sender=sender_addr), source="file")
    assert out.reply is not None
    return out.reply


def _row(app: App, outbox_id: int) -> Outgoing:
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return row


def _statuses(app: App) -> dict[int, str]:
    with app.sessions() as s:
        return {i: status for i, status in s.execute(select(Outgoing.id, Outgoing.status))}


@contextmanager
def _running_sender(app: App) -> Iterator[None]:
    """The real outbox loop (`privbot serve` runs the same), in a thread."""
    stop = threading.Event()
    thread = threading.Thread(target=sender.run_sender, args=(app, stop, 0.05), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        app.outbox_ready.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_the_setting() -> None:
    assert Settings().send_give_up_hours == 72.0
    assert load_settings({"PRIVBOT_SEND_GIVE_UP_HOURS": "0.5"}).send_give_up_hours == 0.5
    with pytest.raises(ConfigError, match="PRIVBOT_SEND_GIVE_UP_HOURS"):
        load_settings({"PRIVBOT_SEND_GIVE_UP_HOURS": "0"})


def test_a_reply_given_up_in_a_long_outage_is_failed_with_the_reason_and_the_rest_go(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # the relay's port, with nothing listening: every connection refused
    app = make_app(
        db_url, smtp_url=f"smtp://127.0.0.1:{port}", retry_seconds="0.05",
        send_give_up_hours=_give_up_hours(GIVE_UP_SECONDS), secret_key="k",
    )  # fmt: skip
    try:
        old = _queue(app, "early@example.org")
        with _running_sender(app):
            wait_until(lambda: _row(app, old).status == "failed", timeout=20,
                       what="the reply to be given up")  # fmt: skip
            failed = _row(app, old)
            assert failed.last_error is not None
            assert failed.last_error.startswith("gave up after ")
            assert "attempts: relay unreachable:" in failed.last_error
            assert "refused" in failed.last_error.lower()  # the relay's own last word
            assert failed.attempts > 2 and failed.lease_until is None
            # Not given up late: the last try fell on the limit, not an hour of backoff after.
            assert failed.created_at + timedelta(seconds=GIVE_UP_SECONDS + 5) > utcnow()
            # A reply queued during the outage waits; the relay comes back; it goes.
            young = _queue(app, "later@example.org")
            assert _row(app, young).status in ("pending", "sending")
            with CaptureRelay(port=port) as relay:
                app.outbox_ready.set()
                wait_until(lambda: _row(app, young).status == "sent", what="delivery after")
                [delivered] = relay.wait_for(1)
                assert delivered["To"] == "later@example.org"
        # Nothing left in between: every reply either went or is failed for staff.
        assert sorted(_statuses(app).values()) == ["failed", "sent"]
        assert _row(app, old).status == "failed"  # given up stays given up: not sent late

        # Staff see it: the audit trail, the CLI listing (table and JSON), the ticket page.
        with app.sessions() as s:
            [event] = s.scalars(select(Event).where(Event.kind == "reply_failed")).all()
        assert event.ticket_id == failed.ticket_id and event.detail["outbox"] == old
        assert event.detail["error"] == failed.last_error
        monkeypatch.setenv("PRIVBOT_DATABASE_URL", db_url)
        assert main(["outbox", "list", "--status", "failed"]) == 0
        table = capsys.readouterr().out
        assert "last_error" in table and "gave up after" in table
        assert "early@example.org" in table and "later@example.org" not in table
        assert main(["outbox", "list", "--json", "--status", "failed"]) == 0
        [listed] = json.loads(capsys.readouterr().out)
        assert listed["id"] == old and listed["last_error"] == failed.last_error
        add_staff(app)
        with TestClient(create_app(app)) as client:
            login(client)
            page = client.get(f"/tickets/{failed.ticket_id}").text
        assert "failed" in page and "gave up after" in page and "relay unreachable" in page
    finally:
        app.close()


def test_a_relay_answering_451_past_the_limit_fails_the_reply_with_its_answer(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url, retry_seconds="0.05",
                   send_give_up_hours=_give_up_hours(GIVE_UP_SECONDS))  # fmt: skip
    try:
        relay.fail_with(451, "4.3.0 queue full, try later")  # until cleared
        stuck = _queue(app, "early@example.org")
        with _running_sender(app):
            wait_until(lambda: _row(app, stuck).status == "failed", timeout=20,
                       what="the reply to be given up")  # fmt: skip
            assert "451 4.3.0 queue full, try later" in (_row(app, stuck).last_error or "")
            relay.clear_faults()
            fresh = _queue(app, "later@example.org")
            app.outbox_ready.set()
            wait_until(lambda: _row(app, fresh).status == "sent", what="delivery after")
        assert [m["To"] for m in relay.messages] == ["later@example.org"]
        assert sorted(_statuses(app).values()) == ["failed", "sent"]
    finally:
        app.close()


def test_the_last_try_falls_on_the_limit_not_a_backoff_later(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url, retry_seconds="3600",
                   send_give_up_hours=_give_up_hours(30))  # fmt: skip
    try:
        reply_id = _queue(app, "alice@example.org")
        relay.fail_with(451, "4.3.0 try later")
        assert app.settings.smtp is not None
        mailer = sender.Mailer(app.settings.smtp, timeout=5)
        send_one(app, mailer)
        mailer.close()
        row = _row(app, reply_id)
        assert row.status == "pending"
        # An hour of backoff would come first; the limit is 30 s after it was queued.
        assert row.next_attempt_at <= row.created_at + timedelta(seconds=30.5)
    finally:
        app.close()


def test_a_relay_refusing_us_before_any_mail_keeps_the_replies_waiting(db_url: str) -> None:
    """A wrong relay password (535) or a 554 greeting is the relay's or ours, not the
    replies': none of them may fail for it, and all go once it is put right."""
    with CaptureRelay(auth=("bot@junocloud.me", "right")) as relay:
        wrong = relay.url.replace(":right@", ":wrong@")
        app = make_app(db_url, smtp_url=wrong, retry_seconds="0.05")
        try:
            ids = [_queue(app, f"user{i}@example.org") for i in range(3)]
            assert app.settings.smtp is not None
            mailer = sender.Mailer(app.settings.smtp, timeout=5)
            for _ in range(3):
                send_one(app, mailer)
            mailer.close()
            rows = [_row(app, i) for i in ids]
            assert all(r.status == "pending" for r in rows), [r.status for r in rows]
            assert all("535" in (r.last_error or "") for r in rows if r.attempts)
            assert relay.auth_attempts and not any(ok for _, ok in relay.auth_attempts)
            # Put right (the operator fixes PRIVBOT_SMTP_URL): everything waiting goes.
            fixed = dataclasses.replace(app.settings.smtp, password="right")
            mailer = sender.Mailer(fixed, timeout=5)
            wait_until(lambda: (send_one(app, mailer), all(
                _row(app, i).status == "sent" for i in ids))[1], what="all three sent")  # fmt: skip
            mailer.close()
            assert len(relay.wait_for(3)) == 3
        finally:
            app.close()
