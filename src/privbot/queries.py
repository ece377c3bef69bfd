"""Read-only views of the tables as plain dicts: the JSON contracts of the CLI (and the web)."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import and_, func, or_, select

from privbot.act import SCOPES
from privbot.app import App
from privbot.mail.parse import ParseError, parse_message
from privbot.models import Event, Message, Outgoing, Staff, Suppression, Ticket, utcnow
from privbot.tickets import BOT


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def tickets(app: App, limit: int = 1000) -> list[dict[str, Any]]:
    with app.sessions() as session:
        rows = session.scalars(select(Ticket).order_by(Ticket.id.desc()).limit(limit)).all()
        thread: dict[int, list[tuple[int, str | None]]] = defaultdict(list)
        if rows:
            for ticket_id, mid, message_id in session.execute(
                select(Message.ticket_id, Message.id, Message.message_id)
                .where(Message.ticket_id.in_([t.id for t in rows]))
                .order_by(Message.id)
            ):
                thread[ticket_id].append((mid, message_id))
        return [
            {
                "id": t.id,
                "ref": f"JC-{t.id}",
                "type": t.type,
                "status": t.status,
                "requester": t.requester,
                "subject": t.subject,
                "intents": list(t.intents or []),
                "language": t.language,
                "assignee": t.assignee,
                "reply_to": t.reply_to,
                "created_at": _iso(t.created_at),
                "updated_at": _iso(t.updated_at),
                "due_at": _iso(t.due_at),
                "closed_at": _iso(t.closed_at),
                # Message-ID headers of the thread's inbound mail; `messages` has our row ids.
                "message_ids": [m for _, m in thread[t.id] if m],
                "messages": [i for i, _ in thread[t.id]],
            }
            for t in rows
        ]


def outbox(app: App, limit: int = 1000) -> list[dict[str, Any]]:
    with app.sessions() as session:
        rows = session.scalars(select(Outgoing).order_by(Outgoing.id.desc()).limit(limit)).all()
        return [
            {
                "id": o.id,
                "to": o.to_addr,
                "subject": o.subject,
                "message_id": o.message_id,
                "in_reply_to": o.in_reply_to,
                "ticket_id": o.ticket_id,
                "kind": o.kind,
                "status": o.status,
                "attempts": o.attempts,
                "last_error": o.last_error,
                "created_at": _iso(o.created_at),
                "next_attempt_at": _iso(o.next_attempt_at),
                "sent_at": _iso(o.sent_at),
            }
            for o in rows
        ]


def messages(app: App, limit: int = 1000, status: str | None = None) -> list[dict[str, Any]]:
    with app.sessions() as session:
        query = select(
            Message.id,
            Message.status,
            Message.reason,
            Message.sender,
            Message.subject,
            Message.message_id,
            Message.source,
            Message.source_ref,
            Message.size,
            Message.attempts,
            Message.ticket_id,
            Message.received_at,
            Message.processed_at,
        )  # not the raw bytes: a listing must stay light
        if status:
            query = query.where(Message.status == status)
        rows = session.execute(query.order_by(Message.id.desc()).limit(limit)).all()
        return [
            {
                **r._asdict(),
                "received_at": _iso(r.received_at),
                "processed_at": _iso(r.processed_at),
            }
            for r in rows
        ]


# -- the staff queue and ticket pages (the web app and `privbot tickets show`) -------------

QUEUE_PAGE = 50


@dataclass(frozen=True)
class QueueFilter:
    type: str = ""
    status: str = ""
    assignee: str = ""  # an address, or "none" for unassigned
    language: str = ""
    q: str = ""  # an address (prefix) or words of the subject
    page: int = 1


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
        pattern = f"%{_like_escape(q)}%"
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
        "rows": [{**_ticket_dict(t), "days_left": _days_left(t.due_at, now)} for t in rows],
    }


def queue_choices(app: App) -> dict[str, list[str]]:
    """Values the queue's filters offer: types, statuses, languages, staff."""
    with app.sessions() as session:
        languages = session.scalars(
            select(Ticket.language).where(Ticket.language.is_not(None)).distinct()
        ).all()
        staff = session.scalars(select(Staff.email).where(Staff.active).order_by(Staff.email)).all()
    types = sorted({i.ticket_type for i in app.classifier.intents.intents})
    statuses = ["awaiting_identity", "open", "in_progress", "done", "rejected"]
    return {
        "types": types,
        "statuses": statuses,
        "languages": sorted(x for x in languages if x),
        "staff": list(staff),
    }


def _days_left(due: datetime | None, now: datetime) -> int | None:
    if due is None:
        return None
    return (due.date() - now.date()).days


def _ticket_dict(t: Ticket) -> dict[str, Any]:
    return {
        "id": t.id,
        "ref": f"JC-{t.id}",
        "type": t.type,
        "status": t.status,
        "requester": t.requester,
        "subject": t.subject,
        "intents": list(t.intents or []),
        "language": t.language,
        "assignee": t.assignee,
        "reply_to": t.reply_to,
        "sender_verified": t.sender_verified,
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
        "due_at": _iso(t.due_at),
        "closed_at": _iso(t.closed_at),
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
            {**e.detail, "message": e.message_id, "at": _iso(e.at)}
            for e in events
            if e.kind == "classified"
        ]
        now = utcnow()
        return {
            **_ticket_dict(ticket),
            "days_left": _days_left(ticket.due_at, now),
            "thread": thread,
            "why": why,
            "screened": [
                {"message": m.id, "status": m.status, "reason": m.reason}
                for m in inbound
                if m.reason and m.status != "handled"
            ],
            "events": [_event_dict(e) for e in events],
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
        "at": _iso(m.received_at),
        "from": m.sender or m.envelope_from or "",
        "from_name": sender_name,
        "subject": m.subject or "",
        "status": m.status,
        "reason": m.reason,
        "source": m.source,
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
        "at": _iso(o.created_at),
        "to": o.to_addr,
        "subject": o.subject,
        "kind": o.kind,
        "status": o.status,
        "last_error": o.last_error,
        "sent_at": _iso(o.sent_at),
        "text": text,
    }


def _event_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _iso(e.at),
        "actor": e.actor,
        "kind": e.kind,
        "ticket_id": e.ticket_id,
        "message_id": e.message_id,
        "detail": e.detail,
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
        "rows": [_event_dict(e) for e in rows[:per_page]],
        "page": page,
        "more": len(rows) > per_page,
        "kinds": list(kinds),
    }


def suppressions(
    app: App, q: str = "", *, include_withdrawn: bool = False, limit: int | None = 200
) -> list[dict[str, Any]]:
    query = select(Suppression).order_by(Suppression.address, Suppression.scope)
    if not include_withdrawn:
        query = query.where(Suppression.withdrawn_at.is_(None))
    q = q.strip().lower()[:320]
    if q:
        query = query.where(Suppression.address.ilike(f"%{_like_escape(q)}%", escape="\\"))
    if limit is not None:
        query = query.limit(limit)
    with app.sessions() as session:
        return [
            {
                "address": s.address,
                "scope": s.scope,
                "since": _iso(s.created_at),
                "by": s.created_by,
                "ticket_id": s.ticket_id,
                "source_message": s.source_message,
                "withdrawn_at": _iso(s.withdrawn_at),
            }
            for s in session.scalars(query)
        ]


SUPPRESSION_CSV = ("address", "scope", "since", "by", "ticket_id", "source_message", "withdrawn_at")


def suppressions_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUPPRESSION_CSV, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in SUPPRESSION_CSV})
    return out.getvalue()


def suppression_status(app: App, address: str) -> dict[str, Any]:
    """What the marketing system asks: which scopes must this address not get?"""
    address = address.strip().lower()
    with app.sessions() as session:
        active = set(
            session.scalars(
                select(Suppression.scope).where(
                    Suppression.address == address, Suppression.withdrawn_at.is_(None)
                )
            )
        )
    scopes = [s for s in SCOPES if s in active]
    return {
        "email": address,
        "suppressed": bool(scopes),
        "scopes": scopes,
        "all_scopes": {s: s in active for s in SCOPES},
    }
