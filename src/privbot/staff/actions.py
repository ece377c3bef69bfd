"""What staff do to a ticket: assign, move status, note, extend, reply, reclassify, opt-outs.

Plain functions over an App; the web app and the CLI call them. Each runs in one
transaction and records an audit event with the staff member as actor. A bad input raises
`ReviewError` with a message fit to show. Staff replies go out through the bot's outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot import optouts
from privbot.app import App
from privbot.audit import record
from privbot.mail.compose import NAME_LIMIT, compose_reply, one_line
from privbot.mail.parse import ParseError, parse_message
from privbot.models import Event, Example, Message, Ticket, utcnow
from privbot.outbox.queue import queue_outgoing
from privbot.replies import long_date
from privbot.staff import auth
from privbot.tickets import CLOSED, add_months, ref, reply_subject, statuses_for

MAX_BODY = 20_000
# GDPR Art. 12(3): the month to answer "may be extended by two further months".
MAX_EXTENSION_MONTHS = 2
STAFF_TEMPLATES = "staff"  # replies/staff/*.txt.j2
QUOTE_LINES = 40  # of the requester's last message, under a reply staff start


class ReviewError(ValueError):
    """The action cannot be done as asked; the message says why."""


def assign(app: App, ticket_id: int, assignee: str | None, *, actor: str) -> Ticket:
    """Give the ticket to an active staff member, or to nobody (None)."""
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        if assignee:
            staff = auth.find_active(session, assignee)
            if staff is None:
                raise ReviewError(f"no active staff account {assignee}")
            assignee = staff.email
        previous = ticket.assignee
        ticket.assignee = assignee or None
        touch(ticket)
        record(session, "assigned", ticket=ticket, actor=actor, to=assignee, previous=previous)
        return ticket


def set_status(app: App, ticket_id: int, status: str, *, actor: str) -> Ticket:
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        allowed = statuses_for(ticket.type)
        if status not in allowed:
            raise ReviewError(
                f"status {status!r} is not one of a {ticket.type} ticket's: {', '.join(allowed)}"
            )
        previous = ticket.status
        if previous == status:
            return ticket
        ticket.status = status
        ticket.closed_at = utcnow() if status in CLOSED else None
        touch(ticket)
        record(session, "status_changed", ticket=ticket, actor=actor, to=status, previous=previous)
        return ticket


def set_language(app: App, ticket_id: int, language: str, *, actor: str) -> Ticket:
    """The language every later mail on the ticket is written in (one privbot has replies
    for): the requester's, when privbot guessed it wrong."""
    language = language.strip().lower()
    if language not in app.replies.languages:
        raise ReviewError(
            f"no replies in {language!r}; one of: {', '.join(sorted(app.replies.languages))}"
        )
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        previous = ticket.language
        if previous == language:
            return ticket
        ticket.language = language
        touch(ticket)
        record(session, "language_set", ticket=ticket, actor=actor, to=language,
               previous=previous)  # fmt: skip
        return ticket


def add_note(app: App, ticket_id: int, text: str, *, actor: str) -> None:
    text = text.strip()
    if not text:
        raise ReviewError("the note is empty")
    if len(text) > MAX_BODY:
        raise ReviewError(f"the note is too long (at most {MAX_BODY} characters)")
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        touch(ticket)
        record(session, "note", ticket=ticket, actor=actor, text=text)


# -- deadline ------------------------------------------------------------------------------


def months_extended(details: Iterable[Mapping[str, Any]]) -> int:
    """The months a ticket's deadline was already extended by, from its deadline_extended
    events: the extend action and the ticket page count them the same way."""
    return sum(int(d.get("months", 0)) for d in details)


def extend_deadline(app: App, ticket_id: int, months: int, reason: str, *, actor: str) -> Ticket:
    """Move the due date by 1-2 months (at most 2 in all) and tell the requester why."""
    reason = reason.strip()
    if months not in (1, 2):
        raise ReviewError("extend by 1 or 2 months")
    if not reason:
        raise ReviewError("give the reason: the requester must be told why (GDPR Art. 12(3))")
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        if ticket.closed_at is not None:
            raise ReviewError("the ticket is closed; reopen it before extending")
        used = months_extended(
            e.detail
            for e in session.scalars(
                select(Event).where(Event.ticket_id == ticket.id, Event.kind == "deadline_extended")
            )
        )
        if used + months > MAX_EXTENSION_MONTHS:
            raise ReviewError(
                f"already extended by {used} month(s); GDPR allows {MAX_EXTENSION_MONTHS} in all"
            )
        previous = ticket.due_at or utcnow()
        ticket.due_at = add_months(previous, months)
        record(
            session, "deadline_extended", ticket=ticket, actor=actor, months=months,
            previous=previous.isoformat(), due=ticket.due_at.isoformat(), reason=reason,
        )  # fmt: skip
        due_at = ticket.due_at
    body = render_template(app, ticket_id, "extension", actor=actor, reason=reason, due_date=due_at)
    draft = draft_reply(app, ticket_id, body)
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        queue_draft(app, session, ticket, draft, actor=actor, event="extension_notice_queued")
    app.outbox_ready.set()
    return ticket


# -- reclassify ----------------------------------------------------------------------------


def reclassify(app: App, ticket_id: int, intents: list[str], *, actor: str) -> Ticket:
    """Correct what the bot understood; the first message becomes a training example."""
    known = app.classifier.intents
    intents = _chosen(intents, known.names, "intent")
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        previous = list(ticket.intents or [])
        main = known.get(max(intents, key=lambda n: known.get(n).priority))
        ticket.intents = intents
        previous_type = ticket.type
        ticket.type = main.ticket_type
        if ticket.status not in statuses_for(ticket.type):
            ticket.status = main.ticket_status
        touch(ticket)
        first = thread_head(session, ticket)
        text = _example_text(first) if first is not None else ticket.subject
        if text:
            for intent in intents:
                session.add(
                    Example(
                        text=text[:5000],
                        intent=intent,
                        language=ticket.language or "en",
                        ticket_id=ticket.id,
                        message_id=first.id if first is not None else None,
                        created_by=actor,
                        created_at=utcnow(),
                    )
                )
        record(
            session, "reclassified", ticket=ticket, actor=actor, intents=intents,
            previous=previous, type=ticket.type, previous_type=previous_type,
            example=bool(text),
        )  # fmt: skip
    app.classifier.refresh(app.sessions)  # the correction counts from now on
    return ticket


def _example_text(message: Message) -> str:
    try:
        parsed = parse_message(message.raw)
    except ParseError:
        return message.subject or ""
    # The words the person wrote, as the classifier reads them (the subject is read apart).
    return parsed.new_text.strip() or parsed.subject.strip()


# -- opt-outs ------------------------------------------------------------------------------


def apply_opt_out(
    app: App, ticket_id: int | None, address: str, scopes: list[str], *, actor: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    address = _address(address)
    scopes = _scopes(scopes)
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id) if ticket_id is not None else None
        return optouts.apply(
            session, address, tuple(scopes), message=None, ticket=ticket, actor=actor
        )


def undo_opt_out(
    app: App, ticket_id: int | None, address: str, scopes: list[str], *, actor: str
) -> tuple[str, ...]:
    """Withdraw suppressions (a mistake, or the person opted in again); recorded."""
    address = _address(address)
    scopes = _scopes(scopes)
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id) if ticket_id is not None else None
        return optouts.withdraw(session, address, scopes, ticket=ticket, actor=actor)


def _address(address: str) -> str:
    try:
        return auth.normalise_email(address)
    except auth.AuthError as exc:
        raise ReviewError(str(exc)) from None


def _scopes(scopes: list[str]) -> list[str]:
    return _chosen(scopes, optouts.SCOPES, "scope")


def _chosen(values: list[str], known: Sequence[str], what: str) -> list[str]:
    """The values chosen in a form, blanks and repeats dropped; at least one, all known."""
    chosen = list(dict.fromkeys(v for v in values if v))
    if not chosen:
        raise ReviewError(f"choose at least one {what}")
    bad = [v for v in chosen if v not in known]
    if bad:
        raise ReviewError(f"unknown {what} {bad[0]!r}; known: {', '.join(known)}")
    return chosen


# -- staff replies --------------------------------------------------------------------------


def staff_templates(app: App) -> list[str]:
    """Names of the reply templates staff may start from (replies/<lang>/staff/*.txt.j2)."""
    return app.replies.names(STAFF_TEMPLATES)


def render_template(app: App, ticket_id: int, name: str, *, actor: str, **extra: object) -> str:
    """A staff template filled in for this ticket: the starting text of a reply."""
    if name not in staff_templates(app):
        raise ReviewError(f"no reply template {name!r}")
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise ReviewError(f"no ticket {ref(ticket_id)}")
        first = thread_head(session, ticket)
        name_of_requester = sender_name(first)
        context = {
            "name": name_of_requester,
            "ticket_id": ticket.id,
            "subject": ticket.subject,
            "address": app.settings.address,
            "requester": ticket.requester,
            "due_date": ticket.due_at,
            "staff": actor,
            "reason": "",
            **extra,
        }
        language = ticket.language  # the requester's: every later mail on the ticket
    try:
        return app.replies.render(f"{STAFF_TEMPLATES}/{name}.txt.j2", language, **context)
    except jinja2.TemplateError as exc:
        raise ReviewError(f"template {name}: {exc}") from None


def start_reply(app: App, ticket_id: int, name: str, *, actor: str) -> str:
    """What the reply box starts from: the template, in the ticket's language, with the
    requester's last message quoted below it (as a mail client quotes the mail answered)."""
    body = render_template(app, ticket_id, name, actor=actor).rstrip()
    quoted = quote_last_message(app, ticket_id)
    return f"{body}\n\n{quoted}\n" if quoted else body + "\n"


def quote_last_message(app: App, ticket_id: int) -> str:
    """The requester's last message as '> ' lines under a 'date, sender:' line; '' if none.

    Only what they wrote that time (not the history they quoted), and at most QUOTE_LINES
    lines: the mail goes to whatever From said, so a forger's essay is not sent back whole.
    The attribution has no words, so it reads the same in every language of the replies.
    """
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise ReviewError(f"no ticket {ref(ticket_id)}")
        last = session.scalar(
            select(Message)
            .where(Message.ticket_id == ticket_id)
            .order_by(Message.id.desc())
            .limit(1)
        )
        if last is None:
            return ""
        raw, received_at, language = last.raw, last.received_at, ticket.language
    try:
        parsed = parse_message(raw)
    except ParseError:
        return ""
    lines = [one_line(line) for line in (parsed.new_text or parsed.text).strip().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return ""
    if len(lines) > QUOTE_LINES:
        lines = [*lines[:QUOTE_LINES], "…"]
    who = one_line(parsed.from_name, NAME_LIMIT)
    sender = f"{who} <{parsed.from_addr}>" if who and parsed.from_addr else who or parsed.from_addr
    when = long_date(received_at, app.replies.language(language))
    head = ", ".join(x for x in (when, sender) if x)
    return "\n".join([f"{head}:" if head else "", *(f"> {line}".rstrip() for line in lines)])


@dataclass(frozen=True)
class Draft:
    """A reply as it will be sent: what the preview shows."""

    to: str
    subject: str
    body: str
    in_reply_to: str | None
    references: tuple[str, ...]


def draft_reply(app: App, ticket_id: int, body: str) -> Draft:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise ReviewError("the reply is empty")
    if len(body) > MAX_BODY:
        raise ReviewError(f"the reply is too long (at most {MAX_BODY} characters)")
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise ReviewError(f"no ticket {ref(ticket_id)}")
        if ticket.erased_at is not None:
            # Its requester stands as a pseudonym now: there is no one to write to.
            raise ReviewError(f"{ref(ticket_id)}'s requester was erased (deletion request)")
        last = session.scalar(
            select(Message)
            .where(Message.ticket_id == ticket.id, Message.message_id.is_not(None))
            .order_by(Message.id.desc())
            .limit(1)
        )
        refs: tuple[str, ...] = ()
        if last is not None:
            try:
                refs = parse_message(last.raw).references
            except ParseError:
                refs = ()
        return Draft(
            # Always the From address: a differing Reply-To is recorded, never used.
            to=ticket.requester,
            # A folded or hostile subject must not break the header line.
            subject=reply_subject(" ".join(ticket.subject.split()), ticket.id),
            body=body + "\n",
            in_reply_to=last.message_id if last is not None else None,
            references=refs,
        )


def send_reply(
    app: App, ticket_id: int, body: str, *, actor: str, kind: str = "staff_reply"
) -> int:
    """Queue a staff reply in the same outbox as the bot's; the sender delivers it.
    Returns the outbox row's id."""
    draft = draft_reply(app, ticket_id, body)
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        row = queue_draft(app, session, ticket, draft, actor=actor, event=kind)
    app.outbox_ready.set()
    return row


def queue_draft(
    app: App, session: Session, ticket: Ticket, draft: Draft, *, actor: str, event: str
) -> int:
    reply = compose_reply(
        from_addr=app.settings.address,
        to_addr=draft.to,
        subject=draft.subject,
        body=draft.body,
        domain=app.settings.domain,
        in_reply_to=draft.in_reply_to,
        references=draft.references,
        automatic=False,  # a person wrote it: auto-responders may answer, as to any mail
        language=app.replies.language(ticket.language),
    )
    row = queue_outgoing(
        session, reply, to_addr=draft.to, kind="staff", ticket_id=ticket.id,
        in_reply_to=draft.in_reply_to,
    )  # fmt: skip
    touch(ticket)
    record(session, event, ticket=ticket, actor=actor, outbox=row, to=draft.to)
    return row


# -- shared ---------------------------------------------------------------------------------


def locked_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id, with_for_update=True)
    if ticket is None:
        raise ReviewError(f"no ticket {ref(ticket_id)}")
    return ticket


def touch(ticket: Ticket) -> None:
    ticket.updated_at = utcnow()


def thread_head(session: Session, ticket: Ticket) -> Message | None:
    return session.scalar(
        select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id).limit(1)
    )


def sender_name(message: Message | None) -> str:
    if message is None:
        return ""
    try:
        return parse_message(message.raw).from_name
    except ParseError:
        return ""
