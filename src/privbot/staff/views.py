"""What staff see, as plain dicts: the queue, a ticket's page, the audit log (the web app
and `privbot tickets show`), and one way to show a ticket, an event, the days left."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, type_coerce
from sqlalchemy.orm import Session

from privbot import search
from privbot.app import App
from privbot.audit import BOT
from privbot.mail.parse import ParseError, parse_message
from privbot.models import (
    Event,
    Message,
    MessageStatus,
    Outgoing,
    Staff,
    Ticket,
    TicketStatus,
    UTCDateTime,
    iso,
    utcnow,
)
from privbot.staff import evidence
from privbot.staff.actions import MAX_EXTENSION_MONTHS, months_extended
from privbot.staff.events import sentence
from privbot.tickets import IDENTITY_TYPES, parse_ref, ref

QUEUE_PAGE = 50
COUNT_CAP = 1_000


@dataclass(frozen=True)
class QueueFilter:
    type: str = ""
    status: str = ""  # "": open tickets (all when searching); "all"; or one status
    assignee: str = ""  # an address, or "none" for unassigned
    language: str = ""
    q: str = ""  # a reference (JC-7, 7), an address (its beginning) or words
    page: int = 1
    sort: str = ""  # one of SORTS; "": due first when open, last change first otherwise
    due: str = ""  # "overdue" or "week": open tickets due before today / within 7 days


ALL = "all"
# Column and direction of each order the queue offers; the id keeps pages stable.
SORTS = {
    "due": (Ticket.due_at, False), "-due": (Ticket.due_at, True),
    "updated": (Ticket.updated_at, False), "-updated": (Ticket.updated_at, True),
    "created": (Ticket.created_at, False), "-created": (Ticket.created_at, True),
}  # fmt: skip
DUE_VIEWS = ("overdue", "week")


def search_query(box: str) -> search.Query:
    """What the search box asks: 'JC-7', 'jc7', '#7' and '7' name ticket 7 (a bare number
    is also a word of the mail); a word with '@' is an address or its beginning
    ('max.weber@'); everything else is words, all of which must match."""
    # Control characters (a NUL above all) are no text either database should be handed.
    value = "".join(c for c in box[:200] if c.isprintable() or c == " ").strip()
    ticket_id = parse_ref(value)
    if ticket_id is not None:
        numeric = value.isdigit()
        return search.Query(ticket_id, terms=(value,) if numeric else (), number_is_word=numeric)
    address, words = "", []
    for part in value.split():
        if "@" in part and not address and not part.startswith("@"):
            address = part.lower()
        else:
            words.extend(search.fold(part).split())
    return search.Query(address=address, terms=tuple(dict.fromkeys(words))[: search.MAX_TERMS])


def sort_of(f: QueueFilter) -> str:
    if f.sort in SORTS:
        return f.sort
    return "due" if _open_only(f) else "-updated"


def _open_only(f: QueueFilter) -> bool:
    return bool(f.due) or (not f.status and not f.q.strip())


def queue(app: App, f: QueueFilter, per_page: int = QUEUE_PAGE) -> dict[str, Any]:
    """Tickets filtered, in the chosen order; one page and the total.

    Open tickets by due date are served by the partial index ix_tickets_open_due (due_at,
    id WHERE closed_at IS NULL): the page is read in index order and stops after LIMIT
    rows. Words are matched by the full-text index (search.py), closed tickets included.
    """
    now = utcnow()
    where: list[ColumnElement[bool]] = []
    if _open_only(f):
        where.append(Ticket.closed_at.is_(None))
    if f.status and f.status != ALL:
        where.append(Ticket.status == f.status)
    if f.type:
        where.append(Ticket.type == f.type)
    if f.assignee == "none":
        where.append(Ticket.assignee.is_(None))
    elif f.assignee:
        where.append(Ticket.assignee == f.assignee.lower())
    if f.language:
        where.append(Ticket.language == f.language)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if f.due == "overdue":
        where.append(Ticket.due_at < today)
    elif f.due == "week":
        where.append(and_(Ticket.due_at >= today, Ticket.due_at < today + timedelta(days=7)))
    page = max(f.page, 1)
    column, descending = SORTS[sort_of(f)]
    order = (column.desc(), Ticket.id.desc()) if descending else (column, Ticket.id)
    with app.sessions() as session:
        query = search_query(f.q)
        matching = search.condition(session, query)
        if matching.count is not None and not where:
            total = matching.count  # the words alone, counted by the full-text index
        else:
            # Counting every ticket a common word is in would cost more than the page:
            # a search counts to just past COUNT_CAP ("more than 1,000").
            words = [] if matching.where is None else [matching.where]
            counted = select(Ticket.id).where(*where, *words)
            if query.terms:
                counted = counted.limit(COUNT_CAP + 1)
            total = session.scalar(select(func.count()).select_from(counted.subquery())) or 0
        if matching.where is not None:
            where.append(matching.where)
        rows = session.scalars(
            select(Ticket)
            .where(*where)
            .order_by(*order)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        moves = last_moves(session, [t.id for t in rows])
    more = total > COUNT_CAP and bool(query.terms)
    total = min(total, COUNT_CAP) if more else total
    return {
        "total": total,
        "more": more,  # a search matched more than `total`: the pages show the first ones
        "page": page,
        "pages": max((total + per_page - 1) // per_page, 1),
        "sort": sort_of(f),
        "open_only": _open_only(f),
        "rows": [
            {**ticket_dict(t), "days_left": days_left(t.due_at, now), **moves.get(t.id, {})}
            for t in rows
        ],
    }


def last_moves(session: Session, ticket_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per ticket: when the requester last wrote, and whether that came after our last
    message to them. Ours is the last staff reply or, before any, the first reply (the
    automatic answer to the opening mail): the automatic acknowledgement of a follow-up
    answers nothing, so the requester is still waiting for a person."""
    if not ticket_ids:
        return {}
    inbound = {
        ticket_id: (last, count)
        for ticket_id, last, count in session.execute(
            select(Message.ticket_id, func.max(Message.received_at), func.count())
            .where(Message.ticket_id.in_(ticket_ids), Message.status == MessageStatus.HANDLED)
            .group_by(Message.ticket_id)
        )
    }
    staff_reply = case((Outgoing.kind == "staff", Outgoing.created_at))
    outbound = {
        ticket_id: (first, staff)
        for ticket_id, first, staff in session.execute(
            select(
                Outgoing.ticket_id,
                func.min(Outgoing.created_at),
                func.max(type_coerce(staff_reply, UTCDateTime)),
            )
            .where(Outgoing.ticket_id.in_(ticket_ids))
            .group_by(Outgoing.ticket_id)
        )
    }
    out: dict[int, dict[str, Any]] = {}
    for ticket_id in ticket_ids:
        last_in, count = inbound.get(ticket_id, (None, 0))
        first_out, staff_out = outbound.get(ticket_id, (None, None))
        ours = staff_out or first_out
        replied = last_in is not None and (last_in > ours if ours else count > 1)
        out[ticket_id] = {
            "last_in_at": iso(last_in),
            "our_last_at": iso(ours),
            "replied": replied,
        }
    return out


def queue_choices(app: App) -> dict[str, list[str]]:
    """Values the queue's filters offer: types, statuses, languages, staff."""
    # The languages privbot writes in: a ticket's is one of them (classifier or staff set
    # it), and reading them off 100,000 tickets cost more than the whole page.
    languages = app.replies.languages
    with app.sessions() as session:
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
        # One conversation: staff's internal notes stand among the mails, in time order.
        thread += [_note(e) for e in events if e.kind == "note"]
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
            "extension": extension(ticket, events),
            "evidence": evidence.state(
                session, ticket, list(events), app.settings.retain_evidence_days
            ),
        }


def extension(ticket: Ticket, events: list[Event]) -> dict[str, Any]:
    """How far the deadline may still be moved: the extend box offers only what is left."""
    used = months_extended(e.detail for e in events if e.kind == "deadline_extended")
    left = max(MAX_EXTENSION_MONTHS - used, 0)
    return {"used": used, "left": left, "closed": ticket.closed_at is not None}


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
        attachments = evidence.attachment_rows(m.id, parsed.attachments)
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


def _note(e: Event) -> dict[str, Any]:
    return {
        "direction": "note",
        "id": e.id,
        "at": iso(e.at),
        "by": e.actor,
        "text": str((e.detail or {}).get("text", "")),
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
        "text": sentence(e.kind, e.detail),  # what staff read; never the detail's repr
    }
