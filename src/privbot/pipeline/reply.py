"""The one automatic answer to a handled message: one part per thing asked, each with the
policy's own words, rendered, composed and queued in the outbox (unless the cap holds it).

Each part names its template (`replies/intents/<intent>.txt.j2`) and carries what that
template quotes. Citations are always the policy's exact words with their heading. Whether
a request quotes its whole sections (the fee AND the evidence of identity) or the
best-matching clauses is the intent file's `quote`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from privbot.app import App
from privbot.audit import record
from privbot.mail.compose import NAME_LIMIT, SUBJECT_LIMIT, compose_reply, one_line
from privbot.mail.parsed import ParsedMessage
from privbot.models import Message, Ticket, utcnow
from privbot.outbox.queue import RepliesSent, address_key, queue_outgoing, replies_sent_since
from privbot.pipeline.plan import Plan, plan
from privbot.tickets import reply_subject
from privbot.understand import Classification
from privbot.understand.policy import Citation, Section


def queue_answer(
    app: App,
    session: Session,
    message: Message,
    parsed: ParsedMessage,
    ticket: Ticket,
    joined: bool,
    understanding: Classification,
    decision: Plan,
    verified: bool = True,
) -> int | None:
    """Compose the reply into the outbox, unless the per-sender cap says enough.

    `verified`: the sender is proven to be From; else an opt-out's confirmation says how
    to undo it. Returns the outbox row's id, or None when the cap held the reply back.
    """
    settings = app.settings
    to = parsed.from_addr or ticket.requester
    since = utcnow() - timedelta(hours=24)
    with session.no_autoflush:  # a count needs none of this message's pending rows
        sent = replies_sent_since(session, to, since)
    held = _held_back(settings.reply_cap, settings.reply_cap_per_domain, sent, to)
    if held is not None:
        record(session, "reply_suppressed", ticket=ticket, message=message, reason=held)
        return None
    body = app.replies.render(
        "answer.txt.j2",
        # What the sender wrote, repeated to whatever From was forged: one short line.
        name=one_line(parsed.from_name, NAME_LIMIT),
        subject=one_line(parsed.subject, SUBJECT_LIMIT),
        ticket_id=ticket.id,
        address=settings.address,
        requester=to,
        joined=joined,
        needs_staff=decision.needs_staff,
        due_date=ticket.due_at.strftime("%d %B %Y") if ticket.due_at else "",
        parts=reply_parts(app, understanding, decision, joined),
        verified=verified,
    )
    reply = compose_reply(
        from_addr=settings.address,
        to_addr=to,
        subject=reply_subject(parsed.subject, ticket.id),
        body=body,
        domain=settings.domain,
        in_reply_to=parsed.message_id,
        references=parsed.references,
    )
    row = queue_outgoing(
        session, reply, to_addr=to, kind="auto", ticket_id=ticket.id,
        in_reply_to=parsed.message_id, reply_to_message=message.id,
    )  # fmt: skip
    record(session, "reply_queued", ticket=ticket, message=message, outbox=row)
    return row


def _held_back(cap: int, domain_cap: int, sent: RepliesSent, to: str) -> str | None:
    """Why no automatic reply may go to `to` now, or None. The mailbox cap stops loops
    (+tags and dots do not make another mailbox); the domain cap, forged senders."""
    if sent.mailbox >= cap:
        return f"reply cap: {cap} automatic replies to {to} in 24 hours"
    if sent.domain >= domain_cap:
        domain = address_key(to).rpartition("@")[2]
        return f"domain reply cap: {domain_cap} automatic replies to {domain} in 24 hours"
    return None


def section_citations(section: Section) -> tuple[Citation, ...]:
    """A section as citations, in reading order: its opening paragraph, clauses, the rest."""
    paragraphs = [Citation(section.heading, p) for p in section.paragraphs]
    clauses = [Citation(section.heading, c.text, c.letter) for c in section.clauses]
    return tuple(paragraphs[:1] + clauses + paragraphs[1:])


def in_policy_order(app: App, cites: list[Citation]) -> tuple[Citation, ...]:
    """Best-matching citations, but quoted in the order the policy reads."""
    order = {
        (c.heading, c.letter, c.text): i
        for i, c in enumerate(c for s in app.policy.sections for c in section_citations(s))
    }
    return tuple(sorted(cites, key=lambda c: order.get((c.heading, c.letter, c.text), 0)))


def reply_parts(
    app: App, understanding: Classification, decision: Plan, joined: bool
) -> list[dict[str, Any]]:
    intents = app.classifier.intents
    used: set[Citation] = set()
    parts: list[dict[str, Any]] = []
    unverified = {"intent": "unverified", "template": "intents/unverified.txt.j2", "citations": ()}
    if decision.doubt is not None and not decision.opt_out_scopes:
        return [unverified]
    if decision.doubt is not None:
        # The opt-out was applied all the same (it only reduces what we send): say so, and
        # that the rest waits for staff.
        part = _part("opt_out", (), understanding, decision)
        rest = [{**unverified, "rest": True}] if decision.needs_staff else []
        return [part, *rest]
    if understanding.low_confidence:
        return [{"intent": "review", "template": "intents/review.txt.j2", "citations": ()}]
    for name in decision.intents:
        if name == "question":
            continue  # answered last, with what the requests did not already quote
        intent = intents.get(name)
        if intent.quote == "sections":
            cites = tuple(
                c for heading in intent.policy_sections
                for c in section_citations(app.policy.section(heading))
            )  # fmt: skip
        else:
            cites = tuple(c for c in understanding.citations if c.heading in intent.policy_sections)
        used.update(cites)
        parts.append(_part(name, cites, understanding, decision))
    if "question" in decision.intents:
        cites = in_policy_order(app, [c for c in understanding.citations if c not in used])
        answered = bool(cites) and not understanding.unanswered_question
        part = _part("question", cites if answered else (), understanding, decision)
        parts.append({**part, "answered": answered})
    if joined and decision.intents == ("other",):
        return []  # a follow-up with nothing new to act on: the opening line says it all
    return parts


def _part(
    name: str, cites: tuple[Citation, ...], understanding: Classification, decision: Plan
) -> dict[str, Any]:
    return {
        "intent": name,
        "template": f"intents/{name}.txt.j2",
        "citations": cites,
        "scopes": decision.opt_out_scopes,
        "held_back": decision.held_back,
        "change": understanding.correction_text or "",
    }


def answer_text(app: App, text: str) -> tuple[Classification, str]:
    """The answer to a question asked in words (`privbot ask`, the chat): nothing is applied."""
    understanding = app.classifier.classify(text)
    decision = plan(understanding, app.classifier.intents, sender="")
    parts = reply_parts(app, understanding, decision, joined=False)
    if decision.intents == ("other",) and not understanding.low_confidence:
        parts = []
    descriptions = {
        i.name: i.description.rstrip(".").lower() for i in app.classifier.intents.intents
    }
    body = app.replies.render(
        "ask.txt.j2", parts=parts, address=app.settings.address, descriptions=descriptions
    )
    return understanding, body
