"""What staff see, as plain dicts: the queue, a ticket's page, the audit log (the web app
and `privbot tickets show`), and one way to show a ticket, an event, the days left."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import and_, func, or_, select

from privbot.app import App
from privbot.audit import BOT
from privbot.db import like_escape
from privbot.mail.parse import ParseError, parse_message
from privbot.models import (
    Event,
    Message,
    MessageStatus,
    Outgoing,
    Staff,
    Ticket,
    TicketStatus,
    iso,
    utcnow,
)
from privbot.tickets import IDENTITY_TYPES, ref

QUEUE_PAGE = 50


@dataclass(frozen=True)
class QueueFilter:
    type: str = ""
    status: str = ""
    assignee: str = ""  # an address, or "none" for unassigned
    language: str = ""
    q: str = ""  # an address (prefix) or words of the subject
    page: int = 1


def queue(app: App, f: QueueFilter, per_page: int = QUEUE_PAGE) -> dict[str, Any]:
    """Open tickets, oldest due first, filtered; one page and the total.

    Served by the partial index ix_tickets_open_due (due_at, id WHERE closed_at IS NULL):
    the page is read in index order and stops after LIMIT rows.
    """
    where = [Ticket.closed_at.is_(None)]
    if f.type:
        where.append(Ticket.type == f.type)
    if f.status:
        where.append(Ticket.status == f.status)
    if f.assignee == "none":
        where.append(Ticket.assignee.is_(None))
    elif f.assignee:
        where.append(Ticket.assignee == f.assignee.lower())
    if f.language:
        where.append(Ticket.language == f.language)
    q = f.q.strip().lower()[:200]
    if q and "@" in q:
        # Addresses are stored lower-case: a range is an index scan on both databases.
        where.append(and_(Ticket.requester >= q, Ticket.requester < q + "\uffff"))
    elif q:
        pattern = f"%{like_escape(q)}%"
        where.append(
            or_(
                Ticket.subject.ilike(pattern, escape="\\"),
                Ticket.requester.ilike(pattern, escape="\\"),
            )
        )
    page = max(f.page, 1)
    with app.sessions() as session:
        total = session.scalar(select(func.count()).select_from(Ticket).where(*where)) or 0
        rows = session.scalars(
            select(Ticket)
            .where(*where)
            .order_by(Ticket.due_at, Ticket.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    now = utcnow()
    return {
        "total": total,
        "page": page,
        "pages": max((total + per_page - 1) // per_page, 1),
        "rows": [{**ticket_dict(t), "days_left": days_left(t.due_at, now)} for t in rows],
    }


def queue_choices(app: App) -> dict[str, list[str]]:
    """Values the queue's filters offer: types, statuses, languages, staff."""
    with app.sessions() as session:
        languages = session.scalars(
            select(Ticket.language).where(Ticket.language.is_not(None)).distinct()
        ).all()
        staff = session.scalars(select(Staff.email).where(Staff.active).order_by(Staff.email)).all()
    types = sorted({i.ticket_type for i in app.classifier.intents.intents})
    statuses = [str(s) for s in TicketStatus]
    return {
        "types": types,
        "statuses": statuses,
        "languages": sorted(x for x in languages if x),
        "staff": list(staff),
    }


def ticket_detail(app: App, ticket_id: int) -> dict[str, Any] | None:
    """A ticket with its whole thread as text (in and out, in time order) and its events."""
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        inbound = session.scalars(
            select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)
        ).all()
        outbound = session.scalars(
            select(Outgoing).where(Outgoing.ticket_id == ticket_id).order_by(Outgoing.id)
        ).all()
        events = session.scalars(
            select(Event).where(Event.ticket_id == ticket_id).order_by(Event.at, Event.id)
        ).all()
        thread = [_inbound(m) for m in inbound] + [_outbound(o) for o in outbound]
        thread.sort(key=lambda item: (item["at"] or "", item["direction"]))
        why = [
            {**e.detail, "message": e.message_id, "at": iso(e.at)}
            for e in events
            if e.kind == "classified"
        ]
        now = utcnow()
        return {
            **ticket_dict(ticket),
            "days_left": days_left(ticket.due_at, now),
            "verification": verification(ticket, inbound[0] if inbound else None),
            "thread": thread,
            "why": why,
            "screened": [
                {"message": m.id, "status": m.status, "reason": m.reason}
                for m in inbound
                if m.reason and m.status != MessageStatus.HANDLED
            ],
            "events": [event_dict(e) for e in events],
        }


def verification(ticket: Ticket, opening: Message | None) -> dict[str, Any]:
    """Whether the requester is proven to be who From says, and what staff need to judge
    it when not: the verdict privbot reached and the envelope sender (SMTP MAIL FROM)."""
    verified = ticket.sender_verified is True
    return {
        "verified": verified,
        "failed": ticket.sender_verified is False,
        "verdict": (opening.auth_result if opening is not None else None) or "not checked",
        "envelope_from": opening.envelope_from if opening is not None else None,
        "source": opening.source if opening is not None else None,
        # An access, deletion or correction request: its identity must be checked first.
        "identity_unproven": not verified and ticket.type in IDENTITY_TYPES,
    }


def _inbound(m: Message) -> dict[str, Any]:
    # Mail is shown as text only: HTML parts come converted to text by the parser.
    try:
        parsed = parse_message(m.raw)
        text, sender_name = parsed.text, parsed.from_name
        attachments = [a.filename or a.content_type for a in parsed.attachments]
    except ParseError as exc:
        text, sender_name, attachments = f"[cannot be parsed: {exc}]", "", []
    return {
        "direction": "in",
        "id": m.id,
        "at": iso(m.received_at),
        "from": m.sender or m.envelope_from or "",
        "from_name": sender_name,
        "subject": m.subject or "",
        "status": m.status,
        "reason": m.reason,
        "source": m.source,
        "envelope_from": m.envelope_from,
        "verdict": m.auth_result,
        "text": text,
        "attachments": attachments,
    }


def _outbound(o: Outgoing) -> dict[str, Any]:
    msg = email.message_from_bytes(o.raw, policy=email.policy.default)
    body = msg.get_body(("plain",)) if isinstance(msg, EmailMessage) else None
    text = body.get_content() if body is not None else ""
    return {
        "direction": "out",
        "id": o.id,
        "at": iso(o.created_at),
        "to": o.to_addr,
        "subject": o.subject,
        "kind": o.kind,
        "status": o.status,
        "last_error": o.last_error,
        "sent_at": iso(o.sent_at),
        "text": text,
    }


def audit_log(
    app: App,
    *,
    kind: str = "",
    actor: str = "",
    ticket: int | None = None,
    page: int = 1,
    per_page: int = 100,
) -> dict[str, Any]:
    """Every recorded action, newest first, filterable."""
    where = []
    if kind:
        where.append(Event.kind == kind)
    if actor == "staff":
        where.append(Event.actor != BOT)
    elif actor:
        where.append(Event.actor == actor.lower())
    if ticket is not None:
        where.append(Event.ticket_id == ticket)
    page = max(page, 1)
    with app.sessions() as session:
        rows = session.scalars(
            select(Event)
            .where(*where)
            .order_by(Event.id.desc())
            .limit(per_page + 1)
            .offset((page - 1) * per_page)
        ).all()
        kinds = session.scalars(select(Event.kind).distinct().order_by(Event.kind)).all()
    return {
        "rows": [event_dict(e) for e in rows[:per_page]],
        "page": page,
        "more": len(rows) > per_page,
        "kinds": list(kinds),
    }


# -- rows -------------------------------------------------------------------------------


def days_left(due: datetime | None, now: datetime) -> int | None:
    if due is None:
        return None
    return (due.date() - now.date()).days


def ticket_dict(t: Ticket, *, sender_verified: bool = True) -> dict[str, Any]:
    """A ticket's fields; `sender_verified=False` leaves that one out (the CLI listing)."""
    out: dict[str, Any] = {
        "id": t.id,
        "ref": ref(t.id),
        "type": t.type,
        "status": t.status,
        "requester": t.requester,
        "subject": t.subject,
        "intents": list(t.intents or []),
        "language": t.language,
        "assignee": t.assignee,
        "reply_to": t.reply_to,
    }
    if sender_verified:
        out["sender_verified"] = t.sender_verified
    out.update(
        created_at=iso(t.created_at),
        updated_at=iso(t.updated_at),
        due_at=iso(t.due_at),
        closed_at=iso(t.closed_at),
    )
    return out


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "actor": e.actor,
        "kind": e.kind,
        "ticket_id": e.ticket_id,
        "message_id": e.message_id,
        "detail": e.detail,
    }
