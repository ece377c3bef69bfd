"""One message through store, parse, screen, thread, act and reply, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import shutil
from pathlib import Path

from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App, data_folder
from privbot.models import Event, Message, Outgoing, Ticket
from testing.apps import mail, make_app


def _reply(app: App, outbox_id: int) -> email.message.EmailMessage:
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return email.message_from_bytes(row.raw, policy=email.policy.default)  # type: ignore[return-value]


def _count(app: App, model: type, *where: object) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_a_human_message_gets_a_ticket_and_one_reply(db_url: str) -> None:
    app = make_app(db_url)
    raw = mail(sender="Alice <Alice@Example.org>", subject="My data", message_id="m1@example.org")
    out = pipeline.receive(app, raw, source="file")
    assert out.status == "handled" and out.ticket and out.reply

    reply = _reply(app, out.reply)
    assert reply["To"] == "alice@example.org"
    assert reply["From"].addresses[0].addr_spec == "support@junocloud.me"
    assert reply["Subject"] == f"Re: My data [JC-{out.ticket}]"
    assert reply["In-Reply-To"] == "<m1@example.org>"
    assert "<m1@example.org>" in reply["References"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["Message-ID"].endswith("@junocloud.me>")
    body = reply.get_content()
    assert f"JC-{out.ticket}" in body and "Alice" in body

    with app.sessions() as s:
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.requester == "alice@example.org"
        assert ticket.due_at is not None and ticket.due_at > ticket.created_at
        kinds = s.scalars(select(Event.kind).where(Event.ticket_id == ticket.id)).all()
        assert {"ticket_opened", "reply_queued"} <= set(kinds)

    again = pipeline.receive(app, raw, source="imap")
    assert again.duplicate and again.ticket == out.ticket and again.reply == out.reply
    assert _count(app, Outgoing) == 1 and _count(app, Ticket) == 1


def test_a_machine_is_stored_and_never_answered(db_url: str) -> None:
    app = make_app(db_url)
    raw = mail(
        sender="MAILER-DAEMON@mx.example.net",
        subject="Undelivered Mail Returned to Sender",
        headers={"Auto-Submitted": "auto-replied"},
    )
    out = pipeline.receive(app, raw, source="smtp")
    assert out.status == "screened" and out.reason
    assert out.reply is None and out.ticket is None
    assert _count(app, Outgoing) == 0 and _count(app, Ticket) == 0
    with app.sessions() as s:
        row = s.get(Message, out.message)
        assert row is not None and row.reason == out.reason and row.raw == raw


def test_a_reply_to_our_reply_joins_the_ticket(db_url: str) -> None:
    app = make_app(db_url)
    first = pipeline.receive(app, mail(message_id="a@x.org"), source="file")
    assert first.reply is not None
    ours = _reply(app, first.reply)["Message-ID"].strip("<>")
    follow = mail(
        subject=f"Re: Re: A question about my data [JC-{first.ticket}]",
        headers={"In-Reply-To": f"<{ours}>", "References": f"<a@x.org> <{ours}>"},
    )
    out = pipeline.receive(app, follow, source="file")
    assert out.status == "handled" and out.ticket == first.ticket
    assert _count(app, Ticket) == 1
    reply = _reply(app, out.reply or 0)
    assert reply["Subject"] == f"Re: A question about my data [JC-{first.ticket}]"
    assert "added your message" in reply.get_content()


def test_subject_tag_joins_only_from_the_requester(db_url: str) -> None:
    app = make_app(db_url)
    request = mail(sender="alice@example.org", body="Please delete my account.\n")
    first = pipeline.receive(app, request, source="file")
    tag = f"Update [JC-{first.ticket}]"
    same = pipeline.receive(app, mail(sender="alice@example.org", subject=tag), source="file")
    other = pipeline.receive(app, mail(sender="mallory@evil.test", subject=tag), source="file")
    assert same.ticket == first.ticket
    assert other.ticket not in (None, first.ticket)


def test_reply_to_that_differs_is_recorded_not_used(db_url: str) -> None:
    app = make_app(db_url)
    raw = mail(sender="bob@example.org", headers={"Reply-To": "victim@example.net"})
    out = pipeline.receive(app, raw, source="file")
    assert _reply(app, out.reply or 0)["To"] == "bob@example.org"
    with app.sessions() as s:
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.reply_to == "victim@example.net"


def test_reply_cap_stops_a_loop_that_slipped_through(db_url: str) -> None:
    app = make_app(db_url, reply_cap="3")
    outcomes = [
        pipeline.receive(app, mail(sender="loop@example.org", subject=f"n{i}"), source="file")
        for i in range(5)
    ]
    assert [o.status for o in outcomes] == ["handled"] * 5  # every message kept, ticketed
    assert [o.reply is not None for o in outcomes] == [True, True, True, False, False]
    assert _count(app, Event, Event.kind == "reply_suppressed") == 2


def test_reply_cap_counts_a_mailbox_however_its_address_is_spelled(db_url: str) -> None:
    # +tags, case and Gmail's dots reach one mailbox: they must not multiply the cap.
    app = make_app(db_url, reply_cap="3")
    spellings = [
        ["eve+1@example.org", "Eve+2@Example.org", "eve@EXAMPLE.org", "eve+4@example.org"],
        ["j.o.e@gmail.com", "joe+x@googlemail.com", "J.oe@Gmail.com", "jo.e+y@gmail.com"],
    ]
    for addresses in spellings:
        outcomes = [
            pipeline.receive(app, mail(sender=a, subject=f"request {i}"), source="file")
            for i, a in enumerate(addresses)
        ]
        assert [o.reply is not None for o in outcomes] == [True, True, True, False], addresses
    with app.sessions() as s:
        reasons = [e.detail["reason"] for e in s.scalars(
            select(Event).where(Event.kind == "reply_suppressed").order_by(Event.id)
        )]  # fmt: skip
    assert len(reasons) == 2 and all("reply cap: 3" in r for r in reasons)


def test_reply_cap_per_domain_stops_forged_senders_of_one_domain(db_url: str) -> None:
    app = make_app(db_url, reply_cap="3", reply_cap_per_domain="2")
    senders = ["a@victim.example", "b@victim.example", "c@Victim.example", "d@other.example"]
    outcomes = [
        pipeline.receive(app, mail(sender=s, subject=f"hello {i}"), source="file")
        for i, s in enumerate(senders)
    ]
    assert [o.status for o in outcomes] == ["handled"] * 4  # stored and ticketed all the same
    assert [o.reply is not None for o in outcomes] == [True, True, False, True]
    with app.sessions() as s:
        [event] = s.scalars(select(Event).where(Event.kind == "reply_suppressed")).all()
    assert "victim.example" in event.detail["reason"]


def test_echoed_name_and_subject_are_one_bounded_line(db_url: str) -> None:
    # Whatever From was forged gets our reply: what the sender wrote must not become
    # a paragraph of theirs in our mail, nor a header a strict relay refuses.
    app = make_app(db_url)
    spam = "Cheap watches at http://spam.example " * 20
    raw = (
        b"From: =?utf-8?q?Bob=0A=0AWin_money_at_spam.example=0D=0A"
        + b"x" * 200
        + b"?= <bob@example.org>\n"
        b"To: support@junocloud.me\n"
        b"Subject: =?utf-8?q?Hi=0A=0AClick_http://spam.example=0A?= "
        + spam.encode()
        + b"\nMessage-ID: <echo@example.org>\n\nWhat do you store about me?\n"
    )
    out = pipeline.receive(app, raw, source="file")
    assert out.status == "handled" and out.reply is not None
    reply = _reply(app, out.reply)
    body = reply.get_content()
    greeting = " ".join(body.split("\n\n")[0].split())  # one paragraph, however wrapped
    assert greeting.startswith("Dear Bob Win money at spam.example xxx")
    assert greeting.endswith("…,") and len(greeting) <= len("Dear ,") + 80
    thanks = next(line for line in body.split("\n\n") if "Thank you for your message" in line)
    echoed = " ".join(thanks.split()).split('"')[1]
    assert echoed.startswith("Hi Click http://spam.example Cheap watches")
    assert echoed.endswith("…") and len(echoed) <= 200
    subject = reply["Subject"]
    assert "\n" not in subject and subject.startswith("Re: Hi Click http://spam.example Cheap")
    assert subject.endswith(f"… [JC-{out.ticket}]")
    assert len(subject) <= len(f"Re:  [JC-{out.ticket}]") + 200


def test_message_without_sender_is_quarantined_with_a_reason(db_url: str) -> None:
    app = make_app(db_url)
    raw = b"To: support@junocloud.me\nSubject: who am I\n\nno From header here\n"
    out = pipeline.receive(app, raw, source="file")
    assert out.status == "quarantined" and out.reason and "sender" in out.reason
    assert _count(app, Outgoing) == 0


def test_broken_mime_still_gets_an_answer(db_url: str) -> None:
    app = make_app(db_url)
    raw = (
        b"From: Piet <piet@example.nl>\nTo: support@junocloud.me\nSubject: =?x-bogus?q?hallo?=\n"
        b"Message-ID: <broken@example.nl>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\n\n'
        b"--never-closed\nContent-Type: text/plain; charset=x-unknown\n"
        b"Content-Transfer-Encoding: base64\n\nR29lZGVkYWc=!!not base64\xff\xfe\n"
    )
    out = pipeline.receive(app, raw, source="file")
    assert out.status == "handled" and out.reply is not None


def test_a_failing_step_is_retried_then_set_aside_for_staff(db_url: str, tmp_path: Path) -> None:
    # A reply template that breaks at render time: a real bug, not a mocked one.
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "en" / "answer.txt.j2").write_text("{{ no_such_variable }}\n")
    app = make_app(db_url, replies_dir=str(replies), max_attempts="2")
    first = pipeline.receive(app, mail(), source="file")
    assert first.status == "received" and "no_such_variable" in (first.reason or "")
    second = pipeline.process(app, first.message)
    assert second.status == "failed"
    assert _count(app, Ticket) == 0 and _count(app, Outgoing) == 0  # the failed try left nothing
    assert _count(app, Event, Event.kind == "failed") == 1


def test_a_failing_message_in_a_batch_is_rolled_back_alone(db_url: str, tmp_path: Path) -> None:
    # One transaction per batch, a savepoint per message: the template breaks for one
    # subject only, and only that message is left undone.
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    answer = replies / "en" / "answer.txt.j2"
    answer.write_text(
        '{% if "Boom" in subject %}{{ no_such_variable }}{% endif %}' + answer.read_text()
    )
    app = make_app(db_url, replies_dir=str(replies))
    items = [
        (mail(sender=f"p{i}@example.org", subject=subject, message_id=f"b{i}@example.org"), None)
        for i, subject in enumerate(["Unsubscribe me", "Boom: my data", "What do you store?"])
    ]
    outcomes = pipeline.receive_batch(app, items, source="imap")
    assert [o.status for o in outcomes] == ["handled", "received", "handled"]
    assert "no_such_variable" in (outcomes[1].reason or "")
    assert outcomes[0].reply is not None and outcomes[2].reply is not None
    assert _count(app, Ticket) == 2 and _count(app, Outgoing) == 2
    # Nothing of the failed message's attempt survived: no ticket, no event but the count.
    assert _count(app, Event, Event.message_id == outcomes[1].message) == 0
    with app.sessions() as session:
        failed = session.get(Message, outcomes[1].message)
        assert failed is not None and failed.attempts == 1 and failed.ticket_id is None
