"""Never answer a machine: the corpora of robots, two bots facing each other, a naive
autoresponder, and a flood from one sender. Every exchange must stop by itself."""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App
from privbot.models import Message, Outgoing, Ticket
from privbot.serve import Service
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port

ROBOT_CORPORA = ("bounces_autoreplies_sisimai", "bounces_autoreplies_bounceparser")
HUMANS = {"is-not-bounce-01.eml", "is-not-bounce-02.eml"}  # people, per the corpus README


def _count(app: App, model: type, *where: object) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_no_reply_to_any_robot_in_the_corpora(corpora: Path, sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    files = [
        p for name in ROBOT_CORPORA for p in sorted((corpora / name).rglob("*"))
        if p.is_file() and p.suffix in (".eml", ".msg") and p.name not in HUMANS
    ]  # fmt: skip
    assert len(files) > 280
    statuses: dict[str, str] = {}
    for path in files:
        out = pipeline.receive(app, path.read_bytes(), source="file", source_ref=str(path))
        statuses[str(path)] = out.status
    answered = [p for p, s in statuses.items() if s == "handled"]
    assert answered == [], f"{len(answered)} robots would have been answered: {answered[:5]}"
    assert _count(app, Outgoing) == 0


class Bot:
    """A privbot instance receiving over SMTP on `port`, sending through `relay_port`."""

    def __init__(self, db_url: str, address: str, port: int, relay_port: int) -> None:
        self.app = make_app(
            db_url, address=address, listen=f"127.0.0.1:{port}",
            smtp_url=f"smtp://127.0.0.1:{relay_port}", retry_seconds="0.2",
        )  # fmt: skip
        self.service = Service(self.app).start()

    def stop(self) -> None:
        self.service.stop()
        self.app.close()


def test_two_bots_mailing_each_other_stop(tmp_path: Path) -> None:
    a_port, b_port = free_port(), free_port()
    # Each bot's relay is the other bot's receiver: whatever one sends, the other gets.
    a = Bot(f"sqlite:///{tmp_path / 'a.db'}", "support@junocloud.me", a_port, b_port)
    b = Bot(f"sqlite:///{tmp_path / 'b.db'}", "privacy@example.net", b_port, a_port)
    try:
        # Someone at B's address writes to A (a person using B's shared mailbox, say).
        with smtplib.SMTP("127.0.0.1", a_port, timeout=10) as smtp:
            first = mail(sender="privacy@example.net", body="Do you use cookies?")
            smtp.sendmail("privacy@example.net", ["support@junocloud.me"], first)
        wait_until(lambda: _count(b.app, Message) >= 1, what="A's reply reaching B")
        time.sleep(3)  # time for any further exchange to happen
        assert _count(a.app, Outgoing) == 1  # A answered the person once
        assert _count(a.app, Message) == 1
        assert _count(b.app, Message) == 1 and _count(b.app, Outgoing) == 0  # B saw a robot
        with b.app.sessions() as s:
            assert s.scalar(select(Message.status)) == "screened"
    finally:
        a.stop()
        b.stop()


class NaiveResponder:
    """Answers every message it gets with "Re: <subject>", no headers, to privbot."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.controller.start()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        incoming = email.message_from_bytes(envelope.original_content or b"",
                                            policy=email.policy.default)  # fmt: skip
        with self.lock:
            self.received += 1
        threading.Thread(target=self._answer, args=(str(incoming["Subject"]),)).start()
        return "250 OK"

    def _answer(self, subject: str) -> None:
        reply = EmailMessage()
        reply["From"] = "robot@naive.example"
        reply["To"] = "support@junocloud.me"
        reply["Subject"] = f"Re: {subject}"
        # Only what its MTA would add: no Auto-Submitted, no In-Reply-To, nothing to spot it by.
        reply["Message-ID"] = make_msgid(domain="naive.example")
        reply["Date"] = formatdate()
        reply.set_content("Thank you for your e-mail. We will get back to you soon.")
        with smtplib.SMTP("127.0.0.1", self.target_port, timeout=10) as smtp:
            smtp.send_message(reply)
        with self.lock:
            self.sent += 1


def test_a_naive_autoresponder_is_answered_at_most_the_cap(tmp_path: Path) -> None:
    bot_port = free_port()
    responder = NaiveResponder(target_port=bot_port)
    app = make_app(
        f"sqlite:///{tmp_path / 'bot.db'}", listen=f"127.0.0.1:{bot_port}",
        smtp_url=f"smtp://127.0.0.1:{responder.port}", reply_cap="3", retry_seconds="0.2",
    )  # fmt: skip
    service = Service(app).start()
    try:
        with smtplib.SMTP("127.0.0.1", bot_port, timeout=10) as smtp:
            first = mail(sender="robot@naive.example", body="Do you sell my data?")
            smtp.sendmail("robot@naive.example", ["support@junocloud.me"], first)
        wait_until(lambda: responder.received >= 3, timeout=30, what="three rounds")
        # Every message kept: the responder's third answer arrives after our third reply.
        wait_until(lambda: _count(app, Message) == 4, timeout=30, what="the fourth message")
        time.sleep(3)
        assert responder.received == 3  # the cap: not a fourth time
        assert _count(app, Outgoing) == 3
        assert _count(app, Message) == 4
        # The question was answered and closed; the responder's mail opened one ticket more,
        # which its later mail joined (by the subject tag: same sender).
        assert _count(app, Ticket) == 2
        assert _count(app, Message, Message.ticket_id.is_(None)) == 0
    finally:
        service.stop()
        app.close()
        responder.controller.stop()


@pytest.fixture
def flood_size() -> Iterator[int]:
    # The soak setting is the 10,000; CI runs a quick 300.
    yield int(os.environ.get("PRIVBOT_FLOOD", "300"))


def test_a_flood_from_one_sender_is_stored_but_capped(sqlite_url: str, flood_size: int) -> None:
    app = make_app(sqlite_url, reply_cap="3")
    for i in range(flood_size):
        raw = mail(sender="flood@example.org", subject=f"message {i}", body=f"Hello {i}?")
        pipeline.receive(app, raw, source="smtp")
    assert _count(app, Message) == flood_size
    assert _count(app, Message, Message.status == "handled") == flood_size
    assert _count(app, Outgoing) == 3
    assert _count(app, Message, Message.ticket_id.is_(None)) == 0  # each ticketed
