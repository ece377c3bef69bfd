"""Understanding and acting, through the whole pipeline: opt-outs, request tickets, answers."""

from __future__ import annotations

import email
import email.policy
import re

from sqlalchemy import select

from privbot import pipeline
from privbot.app import App, data_folder
from privbot.models import Event, Outgoing, Suppression, Ticket
from testing.apps import mail, make_app

# The policy's words as a reader sees them: Markdown links shown as their text.
POLICY = " ".join(
    re.sub(
        r"\[([^\]]*)\]\([^)]*\)", r"\1", (data_folder("replies") / "policy.md").read_text()
    ).split()
)


def flat(reply: str) -> str:
    """The reply as one line of words, quotation marks removed (wrapping ignored)."""
    return " ".join(line.removeprefix("> ") for line in reply.splitlines()).replace("  ", " ")


def _reply_text(app: App, outbox_id: int | None) -> str:
    assert outbox_id is not None, "a reply was expected"
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        msg = email.message_from_bytes(row.raw, policy=email.policy.default)
        return msg.get_content()  # type: ignore[attr-defined]


def quotations(reply: str) -> list[str]:
    """Each quoted policy paragraph or clause of a reply, unwrapped, without its letter."""
    blocks: list[list[str]] = []
    citing = False
    for line in reply.splitlines():
        if not line.startswith(">"):
            citing = (citing and bool(line)) or 'section "' in line
        if line.startswith("> ") and citing:
            text = line[2:]
            if re.match(r"\([a-z]\) ", text) or not blocks or not blocks[-1]:
                blocks.append([])
            blocks[-1].append(re.sub(r"^\([a-z]\) ", "", text))
        elif blocks and blocks[-1]:
            blocks.append([])
    return [" ".join(b) for b in blocks if b]


def assert_cites_policy_words(reply: str, heading: str) -> None:
    assert f'section "{heading}"' in " ".join(reply.split())
    quotes = quotations(reply)
    assert quotes, "the reply quotes the policy"
    for quote in quotes:
        # Quoted clauses are the policy's exact words (the policy writes "(a) text").
        assert " ".join(quote.split()) in POLICY, quote


def _suppressions(app: App, address: str) -> list[str]:
    with app.sessions() as s:
        return sorted(
            s.scalars(select(Suppression.scope).where(Suppression.address == address)).all()
        )


def _ticket(app: App, ticket_id: int | None) -> Ticket:
    with app.sessions() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


def test_opt_out_is_applied_before_the_reply_and_cites_marketing(db_url: str) -> None:
    app = make_app(db_url)
    body = "Please stop sending me your newsletter and don't pass my details to third parties."
    out = pipeline.receive(app, mail(sender="olga@example.org", subject="stop", body=body),
                           source="file")  # fmt: skip
    assert _suppressions(app, "olga@example.org") == ["marketing_email", "third_party_marketing"]
    reply = _reply_text(app, out.reply)
    assert "recorded your objection" in reply
    assert_cites_policy_words(
        reply, "Using your personal information and information about your contacts"
    )
    ticket = _ticket(app, out.ticket)
    assert ticket.type == "opt_out" and ticket.status == "done"  # nothing left for staff
    with app.sessions() as s:
        [event] = s.scalars(select(Event).where(Event.kind == "opt_out_applied")).all()
        assert event.detail["address"] == "olga@example.org"
        assert event.message_id == out.message

    # Asking again changes nothing: one row per scope.
    pipeline.receive(app, mail(sender="olga@example.org", body="Unsubscribe me."), source="file")
    assert _suppressions(app, "olga@example.org") == ["marketing_email", "third_party_marketing"]


def test_german_opt_out(db_url: str) -> None:
    app = make_app(db_url)
    body = "Bitte melden Sie mich vom Newsletter ab. Ich möchte keine Werbung mehr."
    pipeline.receive(app, mail(sender="max@example.de", subject="Abmelden", body=body),
                     source="file")  # fmt: skip
    assert "marketing_email" in _suppressions(app, "max@example.de")


def test_opt_out_for_another_address_becomes_a_ticket(db_url: str) -> None:
    app = make_app(db_url)
    body = "Please unsubscribe jane.doe@example.net from your newsletter."
    raw = mail(sender="mallory@example.org", subject="Newsletter", body=body)
    out = pipeline.receive(app, raw, source="file")
    assert _suppressions(app, "jane.doe@example.net") == []
    assert _suppressions(app, "mallory@example.org") == []
    ticket = _ticket(app, out.ticket)
    assert ticket.type == "opt_out" and ticket.status == "open"
    with app.sessions() as s:
        [why] = s.scalars(select(Event.detail).where(Event.kind == "classified")).all()
        assert any("another address" in reason for reason in why["held_back"])


def test_negated_and_quoted_unsubscribe_change_nothing(db_url: str) -> None:
    app = make_app(db_url)
    negated = "Hi, please do NOT unsubscribe me, I love the newsletter. Where is my invoice?"
    pipeline.receive(app, mail(sender="nina@example.org", body=negated), source="file")
    quoted = (
        "Thanks, that answers my question.\n\nOn Tue, 24 Nov 2026 JunoCloud wrote:\n"
        "> Our autumn offers!\n> To unsubscribe from this newsletter, reply with unsubscribe.\n"
    )
    pipeline.receive(app, mail(sender="omar@example.org", body=quoted), source="file")
    assert _suppressions(app, "nina@example.org") == []
    assert _suppressions(app, "omar@example.org") == []


def test_access_request_opens_a_ticket_awaiting_identity(db_url: str) -> None:
    app = make_app(db_url)
    body = "Under Article 15 GDPR I request a copy of all personal data you hold about me."
    out = pipeline.receive(app, mail(sender="paul@example.org", body=body, message_id="p1@x"),
                           source="file")  # fmt: skip
    ticket = _ticket(app, out.ticket)
    assert (ticket.type, ticket.status) == ("access", "awaiting_identity")
    assert ticket.due_at is not None
    assert 28 <= (ticket.due_at - ticket.created_at).days <= 31
    reply = _reply_text(app, out.reply)
    assert_cites_policy_words(reply, "Your rights")
    assert "EUR 50.00" in flat(reply) and "evidence of your identity" in flat(reply)

    # The evidence arrives later in the same thread and joins the ticket.
    with app.sessions() as s:
        ours = s.scalar(select(Outgoing.message_id).where(Outgoing.id == out.reply))
    evidence = mail(
        sender="paul@example.org",
        subject=f"Re: A question about my data [JC-{ticket.id}]",
        body="Here is the certified copy of my passport and a utility bill.",
        headers={"In-Reply-To": f"<{ours}>", "References": f"<p1@x> <{ours}>"},
    )
    again = pipeline.receive(app, evidence, source="file")
    assert again.ticket == ticket.id


def test_correction_quotes_the_change_and_cites_updating_information(db_url: str) -> None:
    app = make_app(db_url)
    body = "My address has changed. Please update my address to 12 Harbour Road, Cork."
    out = pipeline.receive(app, mail(sender="quinn@example.org", body=body), source="file")
    assert _ticket(app, out.ticket).type == "correction"
    reply = _reply_text(app, out.reply)
    assert_cites_policy_words(reply, "Updating information")
    with app.sessions() as s:
        [change] = s.scalars(select(Event.detail).where(Event.kind == "change_requested")).all()
    assert "12 Harbour Road" in change["text"]


def test_deletion_is_honest_that_the_policy_is_silent(db_url: str) -> None:
    app = make_app(db_url)
    # (Under the default subject, "A question about my data", the reading is unsure: staff.)
    asked = mail(sender="rosa@example.org", subject="Delete my account",
                 body="Please delete my account.")  # fmt: skip
    out = pipeline.receive(app, asked, source="file")
    ticket = _ticket(app, out.ticket)
    assert (ticket.type, ticket.status) == ("deletion", "open")
    reply = _reply_text(app, out.reply)
    assert "no clause about deleting" in " ".join(reply.split())
    assert_cites_policy_words(reply, "Contact")


def test_question_is_answered_from_the_policy_and_nothing_is_applied(db_url: str) -> None:
    app = make_app(db_url)
    out = pipeline.receive(
        app, mail(sender="sam@example.org", body="How do I opt out of cookies?"), source="file"
    )
    reply = _reply_text(app, out.reply)
    assert_cites_policy_words(reply, "Cookies")
    assert _suppressions(app, "sam@example.org") == []
    assert _ticket(app, out.ticket).status == "done"


def test_several_requests_one_reply(db_url: str) -> None:
    app = make_app(db_url)
    body = (
        "Please send me a copy of all the personal data you hold about me. "
        "Also, stop sending me marketing emails."
    )
    out = pipeline.receive(app, mail(sender="tara@example.org", body=body), source="file")
    ticket = _ticket(app, out.ticket)
    assert set(ticket.intents) >= {"data_access", "opt_out"}
    assert ticket.type == "access"
    assert "marketing_email" in _suppressions(app, "tara@example.org")
    with app.sessions() as s:
        replies = s.scalars(select(Outgoing).where(Outgoing.ticket_id == ticket.id)).all()
    assert len(replies) == 1
    reply = _reply_text(app, replies[0].id)
    assert "recorded your objection" in reply and "EUR 50.00" in flat(reply)


def test_spam_gets_no_reply(db_url: str) -> None:
    app = make_app(db_url)
    spam = (
        "CONGRATULATIONS!!! You have WON $1,000,000 in our lottery. Click here now to claim "
        "your prize: http://win.example/claim. Cheap viagra, casino bonus, act now! "
        "Limited time offer, 100% free, no risk, wire transfer fee only."
    )
    out = pipeline.receive(app, mail(sender="winner@spam.example", subject="YOU WON!!!",
                                     body=spam), source="file")  # fmt: skip
    assert out.status == "screened" and out.reason and out.reason.startswith("spam")
    assert out.reply is None


def test_low_confidence_applies_nothing_and_tells_staff_the_candidates(db_url: str) -> None:
    app = make_app(db_url)
    vague = mail(sender="uma@example.org", subject="hm", body="newsletter marketing third parties?")
    out = pipeline.receive(app, vague, source="file")
    with app.sessions() as s:
        [why] = s.scalars(select(Event.detail).where(Event.kind == "classified")).all()
    if why["low_confidence"]:
        assert _suppressions(app, "uma@example.org") == []
        assert why["candidates"] and why["held_back"]
        assert _ticket(app, out.ticket).status != "done"
    else:  # the classifier was sure: then it must have acted on what it saw
        assert why["automatic"] or _ticket(app, out.ticket).status != "done"
