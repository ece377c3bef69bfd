"""The one automatic answer to a handled message: one part per thing asked, each with the
policy's own words, rendered, composed and queued in the outbox (unless the cap holds it).

Each part names its template (`replies/<language>/intents/<intent>.txt.j2`) and carries
what that template quotes. The reply is in the ticket's language (the first message's, or
what staff set), else the language of this message. Citations are always the policy's
exact words with their heading, in English (the policy exists only in English). Whether
a request quotes its whole sections (the fee AND the evidence of identity) or the
best-matching clauses is the intent file's `quote`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from privbot.app import App
from privbot.audit import record
from privbot.mail.compose import NAME_LIMIT, SUBJECT_LIMIT, compose_reply, one_line
from privbot.mail.parsed import ParsedMessage
from privbot.models import Message, Ticket, utcnow
from privbot.outbox.queue import RepliesSent, counted_as, queue_outgoing, replies_sent_since
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
    earlier: tuple[str, ...] | None,
    understanding: Classification,
    decision: Plan,
    verified: bool = True,
) -> int | None:
    """Compose the reply into the outbox, unless the per-sender cap says enough.

    `earlier`: on a follow-up, the intents its ticket had before (None: a new ticket).
    `verified`: the sender is proven to be From; else an opt-out's confirmation says how
    to undo it. Returns the outbox row's id, or None when the cap held the reply back.
    """
    settings = app.settings
    to = parsed.from_addr or ticket.requester
    since = utcnow() - timedelta(hours=24)
    with session.no_autoflush:  # a count needs none of this message's pending rows
        sent = replies_sent_since(session, to, since, domain_limit=settings.reply_cap_per_domain)
    held = _held_back(settings.reply_cap, settings.reply_cap_per_domain, sent, to)
    if held is not None:
        record(session, "reply_suppressed", ticket=ticket, message=message, reason=held)
        return None
    files = tuple(a.filename for a in parsed.attachments if a.filename)
    parts = reply_parts(app, understanding, decision, earlier, files)
    language = app.replies.language(ticket.language or understanding.language)
    body = app.replies.render(
        "answer.txt.j2",
        language,
        # What the sender wrote, repeated to whatever From was forged: one short line.
        name=one_line(parsed.from_name, NAME_LIMIT),
        subject=one_line(parsed.subject, SUBJECT_LIMIT),
        ticket_id=ticket.id,
        address=settings.address,
        requester=to,
        joined=earlier is not None,
        needs_staff=decision.needs_staff,
        due_date=ticket.due_at,
        parts=parts,
        verified=verified,
        quotes_policy=any(p["citations"] for p in parts),
    )
    reply = compose_reply(
        from_addr=settings.address,
        to_addr=to,
        subject=reply_subject(parsed.subject, ticket.id),
        body=body,
        domain=settings.domain,
        in_reply_to=parsed.message_id,
        references=parsed.references,
        language=language,
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
        domain = counted_as(to)["to_domain"]
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


# Files named in a reply (a follow-up's evidence of identity): how many and how long.
FILES_SHOWN = 5
FILE_NAME_LIMIT = 60


def reply_parts(
    app: App,
    understanding: Classification,
    decision: Plan,
    earlier: tuple[str, ...] | None = None,
    files: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The parts of the reply, one per thing asked.

    `earlier`: on a follow-up, the intents its ticket already had (None: a new ticket).
    What was answered before is not answered again; an opt-out is confirmed each time it
    is applied; files sent on a request for a copy of the data are acknowledged as the
    evidence of identity that request asked for. `files`: the message's attachment names.
    """
    intents = app.classifier.intents
    used: set[tuple[str, str]] = set()  # (heading, text): no clause is quoted twice
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
    review = {"intent": "review", "template": "intents/review.txt.j2", "citations": ()}
    if understanding.low_confidence and not (earlier is not None and files):
        # Nothing is done; but what the policy says about a question is said all the same
        # (or that it says nothing): it is information, and a person reads the rest.
        return [review, *_question_part(app, understanding, decision, used)]
    asked = list(decision.intents)
    if earlier is not None:
        if files and "data_access" in (*earlier, *asked):
            evidence = tuple(one_line(f, FILE_NAME_LIMIT) for f in files[:FILES_SHOWN])
            parts.append(
                {"intent": "evidence_received", "template": "intents/evidence_received.txt.j2",
                 "citations": (), "files": evidence}
            )  # fmt: skip
            asked = [n for n in asked if n != "data_access"]
        # Already on the ticket: answered when it was opened; a new question is answered.
        asked = [n for n in asked if n in ("opt_out", "question") or n not in earlier]
        if understanding.low_confidence:
            return parts
    for name in asked:
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
        cites = _unquoted(cites, used)
        parts.append(_part(name, cites, understanding, decision))
    if "question" in asked:
        parts += _question_part(app, understanding, decision, used)
    if earlier is not None and all(p["intent"] == "other" for p in parts):
        return []  # a follow-up with nothing new to act on: the opening line says it all
    return parts


def _question_part(
    app: App, understanding: Classification, decision: Plan, used: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The answer to a question: the policy's passages not quoted yet, or that it is silent."""
    if "question" not in decision.intents:
        return []
    found = in_policy_order(app, list(understanding.citations))
    answered = bool(found) and not understanding.unanswered_question
    cites = _unquoted(found, used)
    if answered and not cites:
        return []  # a request's part above quoted the answer already
    part = _part("question", cites if answered else (), understanding, decision)
    return [{**part, "answered": answered}]


def _unquoted(cites: tuple[Citation, ...], used: set[tuple[str, str]]) -> tuple[Citation, ...]:
    """The citations not yet quoted in this reply (the same clause once, however found)."""
    fresh = []
    for c in cites:
        if (c.heading, c.text) not in used:
            used.add((c.heading, c.text))
            fresh.append(c)
    return tuple(fresh)


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


@dataclass(frozen=True)
class Answer:
    """What `privbot ask` and the chat say to a text, and what it quotes."""

    understanding: Classification
    body: str
    sections: tuple[str, ...]  # the policy headings quoted, in order


def answer_text(app: App, text: str) -> Answer:
    """The answer to a question asked in words (`privbot ask`, the chat): nothing is applied."""
    understanding = app.classifier.classify(text)
    decision = plan(understanding, app.classifier.intents, sender="")
    parts = reply_parts(app, understanding, decision)
    if decision.intents == ("other",) and not understanding.low_confidence:
        parts = []
    body = app.replies.render(
        "ask.txt.j2",
        understanding.language,
        parts=parts,
        address=app.settings.address,
        quotes_policy=any(p["citations"] for p in parts),
    )
    cited = (c.heading for p in parts for c in p["citations"])
    return Answer(understanding, body, tuple(dict.fromkeys(cited)))
