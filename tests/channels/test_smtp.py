"""Mail delivered straight to privbot: 250 only once stored, 550/552/451 where they belong."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from privbot.app import App
from privbot.channels.smtp import start_receiver
from privbot.models import Message
from privbot.serve import Service
from testing.apps import mail, make_app, wait_until
from testing.servers import CaptureRelay, free_port


@pytest.fixture
def receiving(db_url: str) -> Iterator[tuple[App, int]]:
    port = free_port()
    app = make_app(db_url, listen=f"127.0.0.1:{port}", max_message_bytes="200000")
    controller = start_receiver(app)
    yield app, port
    controller.stop()
    app.close()


def _count(app: App) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count(Message.id))) or 0


def test_accepts_our_address_and_stores_before_250(receiving: tuple[App, int]) -> None:
    app, port = receiving
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("alice@example.org", ["support@junocloud.me"], mail())
    # sendmail returned: the 250 came, so the row must already be there.
    assert _count(app) == 1
    with app.sessions() as s:
        row = s.scalars(select(Message)).one()
        assert row.source == "smtp" and row.envelope_from == "alice@example.org"


def test_refuses_other_recipients_with_550(receiving: tuple[App, int]) -> None:
    app, port = receiving
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("alice@example.org")
        code, _ = smtp.rcpt("someone-else@junocloud.me")
    assert code == 550
    assert _count(app) == 0


def test_refuses_oversized_mail_with_552(receiving: tuple[App, int]) -> None:
    app, port = receiving
    big = mail(body=("y" * 998 + "\n") * 300).replace(b"\n", b"\r\n")
    # A client that declares SIZE is refused at MAIL FROM ...
    with (
        smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPSenderRefused) as caught,
    ):
        smtp.sendmail("alice@example.org", ["support@junocloud.me"], big)
    assert caught.value.smtp_code == 552
    # ... one that does not is refused after DATA.
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.mail("alice@example.org")[0] == 250
        assert smtp.rcpt("support@junocloud.me")[0] == 250
        code, _ = smtp.data(big)
    assert code == 552
    assert _count(app) == 0


def test_storage_failure_answers_451(receiving: tuple[App, int]) -> None:
    app, port = receiving
    with app.engine.begin() as conn:  # the store's table is gone: storing must fail
        conn.execute(text("ALTER TABLE messages RENAME TO messages_away"))
    with (
        smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPDataError) as caught,
    ):
        smtp.sendmail("alice@example.org", ["support@junocloud.me"], mail())
    assert caught.value.smtp_code == 451


def test_delivered_mail_is_answered_by_the_service(db_url: str, relay: CaptureRelay) -> None:
    port = free_port()
    app = make_app(db_url, listen=f"127.0.0.1:{port}", smtp_url=relay.url)
    service = Service(app).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            human = mail(sender="dave@example.org")
            bounce = mail(
                sender="postmaster@example.org", subject="Delivery Status Notification (Failure)"
            )
            smtp.sendmail("dave@example.org", ["support@junocloud.me"], human)
            smtp.sendmail("<>", ["support@junocloud.me"], bounce)
        [reply] = relay.wait_for(1)
        assert reply["To"] == "dave@example.org"

        def statuses() -> list[str]:
            with app.sessions() as s:
                return sorted(s.scalars(select(Message.status)).all())

        # Stored at 250; processed a moment later by the processor thread.
        wait_until(lambda: len(statuses()) == 2 and "received" not in statuses(),
                   what="both stored and processed")  # fmt: skip
        assert statuses() == ["handled", "screened"]
    finally:
        service.stop()
        app.close()
    assert len(relay.messages) == 1  # the bounce got nothing
