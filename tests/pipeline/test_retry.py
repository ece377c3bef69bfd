"""Mailman's unshunt: a failed or quarantined message goes through the pipeline again once
staff fixed the cause; nothing else can be retried, and the retry is on the audit trail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.app import data_folder
from privbot.models import Event, Message, Outgoing, Ticket
from testing.apps import mail, make_app
from tests.cli.test_main import privbot


def _broken_replies(tmp_path: Path) -> Path:
    # A reply template that breaks at render time: a real bug, not a mocked one.
    replies = tmp_path / "broken-replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "en" / "answer.txt.j2").write_text("{{ no_such_variable }}\n")
    return replies


def test_a_quarantined_message_is_handled_once_the_limit_is_raised(db_url: str) -> None:
    strict = make_app(db_url, max_message_bytes="1024")
    big = mail(subject="Please delete my account", body="Please delete my account.\n" + "x" * 3000)
    out = pipeline.receive(strict, big, source="file")
    assert out.status == "quarantined" and "too large" in (out.reason or "")

    relaxed = make_app(db_url)  # staff raised PRIVBOT_MAX_MESSAGE_BYTES
    again = pipeline.retry(relaxed, out.message, actor="ada@junocloud.me")
    assert again.status == "handled" and again.ticket and again.reply
    with relaxed.sessions() as s:
        message = s.get(Message, out.message)
        assert message is not None and message.reason is None and message.attempts == 0
        ticket = s.get(Ticket, again.ticket)
        assert ticket is not None and ticket.type == "deletion"
        event = s.scalar(select(Event).where(Event.kind == "retried"))
        assert event is not None and event.actor == "ada@junocloud.me"
        assert event.message_id == out.message and event.detail["previous"] == "quarantined"
        assert "too large" in event.detail["reason"]
    # Handled now: a second retry is refused and changes nothing.
    with pytest.raises(pipeline.RetryError, match="handled"):
        pipeline.retry(relaxed, out.message, actor="ada@junocloud.me")
    with relaxed.sessions() as s:
        assert len(s.scalars(select(Outgoing)).all()) == 1


def test_a_failed_message_is_handled_once_the_template_is_fixed(
    db_url: str, tmp_path: Path
) -> None:
    broken = make_app(db_url, replies_dir=str(_broken_replies(tmp_path)), max_attempts="1")
    out = pipeline.receive(broken, mail(subject="Unsubscribe me"), source="file")
    assert out.status == "failed"
    assert pipeline.set_aside(broken) == [out.message]

    fixed = make_app(db_url)
    again = pipeline.retry(fixed, out.message, actor="cli")
    assert again.status == "handled" and again.reply is not None
    assert pipeline.set_aside(fixed) == []


def test_only_failed_or_quarantined_mail_is_retried(db_url: str) -> None:
    app = make_app(db_url)
    handled = pipeline.receive(app, mail(), source="file")
    bounce = mail(sender="MAILER-DAEMON@example.org", subject="Undelivered Mail Returned")
    screened = pipeline.receive(app, bounce, source="file")
    assert (handled.status, screened.status) == ("handled", "screened")
    for outcome in (handled, screened):
        with pytest.raises(pipeline.RetryError, match="only failed or quarantined"):
            pipeline.retry(app, outcome.message, actor="cli")
    with pytest.raises(pipeline.RetryError, match="no stored message"):
        pipeline.retry(app, 999_999, actor="cli")


def test_messages_retry_from_the_command_line(sqlite_url: str, tmp_path: Path) -> None:
    replies = _broken_replies(tmp_path)
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    broken = {**env, "PRIVBOT_REPLIES_DIR": str(replies), "PRIVBOT_MAX_ATTEMPTS": "1"}
    for i in range(2):
        eml = tmp_path / f"m{i}.eml"
        eml.write_bytes(mail(sender=f"p{i}@example.org", message_id=f"r{i}@example.org"))
        assert "failed" in privbot("ingest", str(eml), env=broken).stdout

    nothing = privbot("messages", "retry", env=env)
    assert nothing.returncode == 2  # an id or --failed is required
    result = privbot("messages", "retry", "--failed", "--as", "ada@junocloud.me", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("handled" in line and "reply #" in line for line in lines)
    rows = json.loads(privbot("messages", "list", "--json", env=env).stdout)
    assert sorted(r["status"] for r in rows) == ["handled", "handled"]
    assert privbot("messages", "retry", "--failed", env=env).stdout.strip() == "no failed messages"
    refused = privbot("messages", "retry", str(rows[0]["id"]), env=env)
    assert refused.returncode == 1 and "only failed or quarantined" in refused.stderr
