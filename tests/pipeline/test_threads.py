"""Threads through the real pipeline: every kind of reference a follow-up carries (our reply,
the person's own earlier mail, a staff reply) joins its ticket, and what we send carries the
ids as mail clients expect them, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App
from privbot.models import Event, Message, Outgoing, Ticket
from privbot.outbox import sender
from privbot.staff import actions
from testing.apps import mail, make_app, send_one
from testing.servers import CaptureRelay

ACCESS = "Please send me a copy of my personal data."  # a request: the ticket stays open
ADA = "ada@junocloud.me"


def _tickets(app: App) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count(Ticket.id))) or 0


def _sent(app: App, relay: CaptureRelay, count: int) -> EmailMessage:
    """Send what the outbox holds through the relay; the last mail the relay received."""
    assert app.settings.smtp is not None
    mailer = sender.Mailer(app.settings.smtp, timeout=5)
    try:
        while send_one(app, mailer):
            pass
    finally:
        mailer.close()
    return relay.wait_for(count)[-1]


def _joined_by(app: App, message: int) -> str | None:
    with app.sessions() as s:
        event = s.scalar(
            select(Event).where(Event.kind == "message_joined", Event.message_id == message)
        )
        return event.detail.get("by") if event is not None else None


@pytest.mark.parametrize(
    "header",
    [
        b"<p1@example.org>",
        b"  <p1@example.org> (sent from my phone)",
        b"\n <p1@example.org>",  # folded onto its own line
    ],
)
def test_a_follow_up_to_the_persons_own_earlier_mail_joins_its_ticket(
    db_url: str, header: bytes
) -> None:
    app = make_app(db_url)
    first_raw = mail(sender="paula@example.org", subject="My data", body=ACCESS,
                     message_id="p1@example.org")  # fmt: skip
    first_raw = first_raw.replace(b"Message-ID: <p1@example.org>", b"Message-ID: " + header)
    first = pipeline.receive(app, first_raw, source="file")
    assert first.status == "handled" and first.ticket is not None
    # She answers her own sent mail ("I wrote to you last week"): no tag, no reply of ours.
    follow = mail(
        sender="paula@example.org",
        subject="Re: My data",
        body="Any news? I asked for a copy of my data a week ago.\n",
        headers={"In-Reply-To": "<p1@example.org>", "References": "<p1@example.org>"},
    )
    out = pipeline.receive(app, follow, source="file")
    assert out.ticket == first.ticket
    assert _tickets(app) == 1
    assert _joined_by(app, out.message) == "references"
    with app.sessions() as s:  # stored as parsed: the one form every lookup compares
        stored = s.scalar(select(Message.message_id).where(Message.id == first.message))
    assert stored == "p1@example.org"


def test_a_staff_reply_threads_under_the_persons_mail_and_an_answer_to_it_joins(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    first = pipeline.receive(
        app,
        mail(sender="sam@example.org", subject="Data", body=ACCESS, message_id="s1@example.org",
             headers={"References": "<older@example.org>"}),
        source="file",
    )  # fmt: skip
    assert first.ticket is not None
    _sent(app, relay, 1)  # our automatic answer

    row = actions.send_reply(app, first.ticket, "We are on it.", actor=ADA)
    staff_mail = _sent(app, relay, 2)
    assert staff_mail["In-Reply-To"] == "<s1@example.org>"
    assert staff_mail["References"] == "<older@example.org> <s1@example.org>"
    with app.sessions() as s:
        outgoing = s.get(Outgoing, row)
        assert outgoing is not None and outgoing.in_reply_to == "s1@example.org"

    # The answer to the staff reply: its Message-ID in In-Reply-To, no subject tag.
    staff_id = staff_mail["Message-ID"]
    answer = mail(
        sender="sam@example.org",
        subject="Thanks",
        body="Here is my passport scan.\n",
        headers={"In-Reply-To": staff_id, "References": f"<s1@example.org> {staff_id}"},
    )
    out = pipeline.receive(app, answer, source="file")
    assert out.ticket == first.ticket and _tickets(app) == 1
    assert _joined_by(app, out.message) == "references"


def test_a_whole_conversation_stays_one_ticket_whatever_each_mail_references(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    first = pipeline.receive(
        app, mail(sender="vera@example.org", subject="Data", body=ACCESS, message_id="v1@x.org"),
        source="file",
    )  # fmt: skip
    ticket = first.ticket
    ours = _sent(app, relay, 1)
    assert ours["In-Reply-To"] == "<v1@x.org>"

    to_ours = mail(sender="vera@example.org", subject="Re: Data", message_id="v2@x.org",
                   headers={"In-Reply-To": ours["Message-ID"],
                            "References": f"<v1@x.org> {ours['Message-ID']}"})  # fmt: skip
    assert pipeline.receive(app, to_ours, source="file").ticket == ticket

    actions.send_reply(app, ticket or 0, "Which account do you mean?", actor=ADA)
    staff_mail = _sent(app, relay, 3)  # our answer to v2 was sent as well
    assert staff_mail["In-Reply-To"] == "<v2@x.org>"
    assert "<<" not in staff_mail["References"] and "<v1@x.org>" in staff_mail["References"]

    to_staff = mail(sender="vera@example.org", subject="Re: Data", message_id="v3@x.org",
                    headers={"In-Reply-To": staff_mail["Message-ID"],
                             "References": staff_mail["References"] + " "
                             + staff_mail["Message-ID"]})  # fmt: skip
    assert pipeline.receive(app, to_staff, source="file").ticket == ticket

    to_own = mail(sender="vera@example.org", subject="Still waiting", message_id="v4@x.org",
                  headers={"In-Reply-To": "<v3@x.org>"})  # fmt: skip
    assert pipeline.receive(app, to_own, source="file").ticket == ticket
    assert _tickets(app) == 1


def test_an_overlong_message_id_neither_jams_processing_nor_breaks_the_reply(
    db_url: str,
) -> None:
    app = make_app(db_url)
    huge = "x" * 1500 + "@example.org"  # no mailer writes this; a line of mail holds 998
    raw = mail(sender="olga@example.org", message_id=huge,
               headers={"References": f"<{huge}> <fine@example.org>"})  # fmt: skip
    out = pipeline.receive(app, raw, source="file")
    assert out.status == "handled" and out.reply is not None
    with app.sessions() as s:
        outgoing = s.get(Outgoing, out.reply)
        assert outgoing is not None and outgoing.in_reply_to is None
        reply = email.message_from_bytes(outgoing.raw, policy=email.policy.default)
    assert max(len(line) for line in outgoing.raw.split(b"\n")) <= 998
    assert reply["In-Reply-To"] is None  # not an id any mail client could match
