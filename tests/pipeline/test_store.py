"""Store first: one row per distinct message, however often it arrives."""

from __future__ import annotations

from sqlalchemy import func, select

from privbot.models import Message
from privbot.pipeline.store import idempotency_key, store_message
from testing.apps import mail, make_app


def test_same_message_twice_is_stored_once(db_url: str) -> None:
    app = make_app(db_url)
    raw = mail(message_id="once@example.org")
    first = store_message(app.sessions, raw, source="imap", source_ref="1:1")
    second = store_message(app.sessions, raw, source="imap", source_ref="1:2")
    assert first.new and not second.new
    assert first.id == second.id
    with app.sessions() as s:
        assert s.scalar(select(func.count(Message.id))) == 1
        row = s.get(Message, first.id)
        assert row is not None and row.raw == raw and row.status == "received"
        assert row.message_id == "once@example.org"  # as parsed: threading compares this


def test_transit_headers_and_line_endings_do_not_make_a_new_message() -> None:
    raw = mail(message_id="same@example.org")
    relayed = (
        b"Received: from mx2.example.net by mx.junocloud.me; Wed, 25 Nov 2026 10:00:00 +0000\r\n"
        b"Delivered-To: privacy@junocloud.me\r\nReturn-Path: <alice@example.org>\r\n"
        + raw.replace(b"\n", b"\r\n")
    )
    assert idempotency_key(raw) == idempotency_key(relayed)


def test_reused_message_id_on_other_content_is_another_message(db_url: str) -> None:
    app = make_app(db_url)
    a = store_message(app.sessions, mail(message_id="dup@x", body="one\n"), source="smtp")
    b = store_message(app.sessions, mail(message_id="dup@x", body="two\n"), source="smtp")
    assert a.new and b.new and a.id != b.id
