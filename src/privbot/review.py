"""What staff do to a ticket: assign, move status, extend, reply, note, reclassify, opt-outs.

Plain functions over an App; the web app and the CLI call them. Each runs in one
transaction and records an audit event with the staff member as actor. A bad input raises
`ReviewError` with a message fit to show.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from privbot import act, auth
from privbot.app import App
from privbot.mail.parse import ParseError, parse_message
from privbot.models import Event, Example, Message, Suppression, Ticket, utcnow
from privbot.review_common import (
    MAX_BODY,
    ReviewError,
    date_text,
    locked_ticket,
    thread_head,
    touch,
)
from privbot.review_replies import (
    STAFF_TEMPLATES,
    Draft,
    draft_reply,
    queue_draft,
    render_template,
    send_reply,
    staff_templates,
)
from privbot.tickets import add_months, record

# The statuses a ticket of each type moves through; the first is where it starts.
STATUSES: dict[str, tuple[str, ...]] = {
    "access": ("awaiting_identity", "in_progress", "done", "rejected"),
}
DEFAULT_STATUSES = ("open", "in_progress", "done", "rejected")
CLOSED = frozenset({"done", "rejected"})
# GDPR Art. 12(3): the month to answer "may be extended by two further months".
MAX_EXTENSION_MONTHS = 2


def statuses_for(ticket_type: str) -> tuple[str, ...]:
    return STATUSES.get(ticket_type, DEFAULT_STATUSES)


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
        used = sum(
            int(e.detail.get("months", 0))
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
    body = render_template(
        app, ticket_id, "extension", actor=actor, reason=reason, due_date=date_text(due_at)
    )
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
        return act.apply_opt_out(
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
        rows = session.scalars(
            select(Suppression).where(
                Suppression.address == address,
                Suppression.scope.in_(scopes),
                Suppression.withdrawn_at.is_(None),
            )
        ).all()
        now = utcnow()
        for row in rows:
            row.withdrawn_at = now
        withdrawn = tuple(s for s in act.SCOPES if s in {r.scope for r in rows})
        record(
            session, "opt_out_withdrawn", ticket=ticket, actor=actor, address=address,
            scopes=list(withdrawn),
        )  # fmt: skip
        return withdrawn


def _address(address: str) -> str:
    try:
        return auth.normalise_email(address)
    except auth.AuthError as exc:
        raise ReviewError(str(exc)) from None


def _scopes(scopes: list[str]) -> list[str]:
    return _chosen(scopes, act.SCOPES, "scope")


def _chosen(values: list[str], known: Sequence[str], what: str) -> list[str]:
    """The values chosen in a form, blanks and repeats dropped; at least one, all known."""
    chosen = list(dict.fromkeys(v for v in values if v))
    if not chosen:
        raise ReviewError(f"choose at least one {what}")
    bad = [v for v in chosen if v not in known]
    if bad:
        raise ReviewError(f"unknown {what} {bad[0]!r}; known: {', '.join(known)}")
    return chosen


__all__ = [
    "CLOSED",
    "DEFAULT_STATUSES",
    "MAX_BODY",
    "MAX_EXTENSION_MONTHS",
    "STAFF_TEMPLATES",
    "STATUSES",
    "Draft",
    "ReviewError",
    "add_note",
    "apply_opt_out",
    "assign",
    "draft_reply",
    "extend_deadline",
    "reclassify",
    "render_template",
    "send_reply",
    "set_status",
    "staff_templates",
    "statuses_for",
    "undo_opt_out",
]
