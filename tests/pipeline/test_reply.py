"""What the one reply says: honest gaps, follow-ups acknowledged as follow-ups, no clause
twice, and every later mail on a ticket in the requester's language."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage

from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.models import Outgoing, Suppression, Ticket
from privbot.pipeline.plan import plan
from privbot.pipeline.reply import reply_parts
from privbot.staff import actions
from testing.apps import mail, make_app


def _reply(app: App, outbox_id: int | None) -> EmailMessage:
    assert outbox_id is not None, "a reply was expected"
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return email.message_from_bytes(row.raw, policy=email.policy.default)  # type: ignore[return-value]


def _text(app: App, outbox_id: int | None) -> str:
    return " ".join(_reply(app, outbox_id).get_content().split())


def _ticket(app: App, ticket_id: int | None) -> Ticket:
    with app.sessions() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


def _with_files(sender: str, subject: str, body: str, files: list[str]) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@junocloud.me", subject
    msg["Message-ID"] = f"<files.{len(files)}@example.org>"
    msg.set_content(body)
    for name in files:
        msg.add_attachment(b"%PDF-1.4 scan", maintype="application", subtype="pdf",
                           filename=name)  # fmt: skip
    return msg.as_bytes()


def test_a_question_the_policy_does_not_answer_is_told_so_in_its_language(db_url: str) -> None:
    app = make_app(db_url)
    body = "Guten Tag,\n\nwie lange speichern Sie meine Daten?\n\nJana Schulz\n"
    asked = mail(sender="jana@example.org", subject="Speicherdauer", body=body)
    out = pipeline.receive(app, asked, source="file")
    reply = _reply(app, out.reply)
    text = " ".join(reply.get_content().split())
    assert reply["Content-Language"] == "de"
    # Said plainly, in German: the policy has no answer, a person will answer.
    assert "keine Antwort" in text and "persönlich antworten" in text
    assert ">" not in reply.get_content()  # nothing quoted in its place
    ticket = _ticket(app, out.ticket)
    assert ticket.closed_at is None and ticket.language == "de"  # staff answer it


def test_evidence_sent_on_an_access_request_is_acknowledged_not_asked_for_again(
    db_url: str,
) -> None:
    app = make_app(db_url)
    body = "Please send me a copy of all the personal data you hold about me.\n"
    ask = mail(sender="ana@example.org", subject="My data", body=body)
    first = pipeline.receive(app, ask, source="file")
    assert "evidence of your identity described above" in _text(app, first.reply)
    follow = _with_files(
        "ana@example.org",
        f"Re: My data [JC-{first.ticket}]",
        "Here is my passport copy and a utility bill, as you asked.\n\nAna\n",
        ["passport.pdf", "bill.pdf"],
    )
    out = pipeline.receive(app, follow, source="file")
    assert out.ticket == first.ticket
    text = _text(app, out.reply)
    assert "we have received 2 files (passport.pdf, bill.pdf)" in text
    assert "you do not need to send anything else" in text
    assert "evidence of your identity described above" not in text  # not asked again
    assert "Your rights" not in text  # the conditions are not quoted again


def test_a_follow_up_that_adds_an_opt_out_gets_it_applied_and_confirmed_only(
    db_url: str,
) -> None:
    app = make_app(db_url)
    ask = mail(sender="ben@example.org", subject="Copy of my data",
               body="Please send me a copy of the personal data you hold about me.\n")  # fmt: skip
    first = pipeline.receive(app, ask, source="file")
    follow = mail(sender="ben@example.org", subject=f"Re: Copy of my data [JC-{first.ticket}]",
                  body="And please stop sending me your newsletter.\n")  # fmt: skip
    out = pipeline.receive(app, follow, source="file")
    assert out.ticket == first.ticket
    text = _text(app, out.reply)
    assert "Stopping marketing" in text and "recorded your objection" in text
    assert "A copy of your personal data" not in text  # the earlier answer is not repeated
    with app.sessions() as s:
        scopes = s.scalars(
            select(Suppression.scope).where(Suppression.address == "ben@example.org")
        ).all()
    assert "marketing_email" in scopes


def test_a_request_and_a_question_on_one_section_quote_it_once(db_url: str) -> None:
    app = make_app(db_url)
    both = mail(sender="cara@example.org", subject="Copy of my data",
                body="Please send me a copy of all the personal data you hold about me. "
                     "How much does a copy cost, and what documents do you need?\n")  # fmt: skip
    out = pipeline.receive(app, both, source="file")
    body = _reply(app, out.reply).get_content()
    quoted = [line for line in body.splitlines() if line.startswith("> ") and len(line) > 20]
    assert quoted and len(quoted) == len(set(quoted))
    assert body.count('section "Your rights"') == 1


def test_later_mails_on_a_ticket_are_in_its_language_which_staff_can_change(
    db_url: str,
) -> None:
    app = make_app(db_url)
    ask = mail(sender="luc@example.org", subject="Mes données",
               body="Bonjour,\n\nmerci de m'envoyer une copie de toutes mes données "
                    "personnelles.\n\nLuc Bernard\n")  # fmt: skip
    out = pipeline.receive(app, ask, source="file")
    assert out.ticket is not None
    assert _ticket(app, out.ticket).language == "fr"
    draft = actions.render_template(app, out.ticket, "request_done", actor="eva@junocloud.me")
    assert "Cordialement" in draft and "Kind regards" not in draft
    actions.set_language(app, out.ticket, "de", actor="eva@junocloud.me")
    actions.extend_deadline(app, out.ticket, 1, "many archives", actor="eva@junocloud.me")
    with app.sessions() as s:
        notice = s.scalars(
            select(Outgoing).where(Outgoing.ticket_id == out.ticket, Outgoing.kind == "staff")
        ).one()
    letter = email.message_from_bytes(notice.raw, policy=email.policy.default)
    assert letter["Content-Language"] == "de"
    assert "Freundliche Grüße" in letter.get_content()  # type: ignore[attr-defined]
    try:
        actions.set_language(app, out.ticket, "xx", actor="eva@junocloud.me")
    except actions.ReviewError as exc:
        assert "no replies in 'xx'" in str(exc)
    else:
        raise AssertionError("an unknown language was accepted")


def test_a_question_read_without_confidence_still_gets_the_policys_words(db_url: str) -> None:
    """Nothing is done at low confidence, and a person reads the mail; what the policy says
    about the question is information all the same."""
    app = make_app(db_url)
    sure = app.classifier.classify("Do you use cookies on your website, and can I refuse them?")
    assert "question" in sure.intents and sure.citations
    unsure = replace(sure, low_confidence=True)
    decision = plan(unsure, app.classifier.intents, sender="dan@example.org")
    parts = reply_parts(app, unsure, decision)
    assert [p["intent"] for p in parts] == ["review", "question"]
    assert parts[1]["answered"] and {c.heading for c in parts[1]["citations"]} == {"Cookies"}
    assert decision.needs_staff and not decision.opt_out_scopes
