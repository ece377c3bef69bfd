"""Tickets and the audit trail: opening, joining, and recording what happened."""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from privbot.models import Event, Message, Outgoing, Ticket, utcnow

BOT = "privbot"
_TAG = re.compile(r"\[JC-(\d+)\]", re.IGNORECASE)


def add_months(moment: datetime, months: int) -> datetime:
    """Same day `months` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def record(
    session: Session,
    kind: str,
    *,
    ticket: Ticket | int | None = None,
    message: Message | None = None,
    actor: str = BOT,
    **detail: Any,
) -> None:
    """Add an event to the audit trail, in the caller's transaction.

    A plain INSERT on the session's connection rather than an ORM object: events are written,
    never changed, and the unit of work's bookkeeping for them was a fifth of the cost of
    handling a message.
    """
    session.connection().execute(
        insert(Event.__table__),
        {
            "kind": kind,
            "actor": actor,
            "ticket_id": ticket.id if isinstance(ticket, Ticket) else ticket,
            "message_id": message.id if message else None,
            "detail": detail,
            "at": utcnow(),
        },
    )


def open_ticket(
    session: Session,
    *,
    requester: str,
    subject: str,
    received_at: datetime,
    due_months: int,
    type: str = "general",
    status: str = "open",
    intents: list[str] | None = None,
    language: str | None = None,
    reply_to: str | None = None,
    sender_verified: bool | None = None,
    closed: bool = False,
) -> Ticket:
    now = utcnow()
    ticket = Ticket(
        type=type,
        status=status,
        requester=requester,
        subject=subject[:2000],
        intents=intents or [],
        language=language,
        reply_to=reply_to,
        created_at=now,
        updated_at=now,
        due_at=add_months(received_at, due_months),
        sender_verified=sender_verified,
        closed_at=now if closed else None,
    )
    session.add(ticket)
    session.flush()  # the id is needed for the reply's subject tag
    return ticket


def find_thread(
    session: Session, *, sender: str, subject: str, refs: tuple[str, ...]
) -> tuple[Ticket | None, str]:
    """The ticket this message continues, and how it was recognised.

    A reply to one of our messages or to a message of the ticket joins it by its headers,
    even when the ticket was done (the caller reopens it: "that did not answer me" belongs
    with what it answers). The subject tag alone is easy to copy, so it joins only an open
    ticket, and only when the sender is the requester.
    """
    if refs:
        ticket_id = session.scalar(
            select(Outgoing.ticket_id).where(
                Outgoing.message_id.in_(refs), Outgoing.ticket_id.is_not(None)
            )
        ) or session.scalar(
            select(Message.ticket_id).where(
                Message.message_id.in_(refs), Message.ticket_id.is_not(None)
            )
        )
        ticket = session.get(Ticket, ticket_id) if ticket_id else None
        if ticket is not None:
            return ticket, "references"
    for match in _TAG.finditer(subject or ""):
        ticket = session.get(Ticket, int(match.group(1)))
        if ticket is not None and ticket.closed_at is None and ticket.requester == sender:
            return ticket, "subject tag"
    return None, ""


def replies_sent_since(session: Session, address: str, since: datetime) -> int:
    """Automatic replies queued for an address since a moment: the loop cap counts these."""
    table = Outgoing.__table__
    # Core on the session's connection: the ORM's execute path cost more than the query.
    count = session.connection().scalar(
        select(func.count(table.c.id)).where(
            table.c.to_addr == address, table.c.kind == "auto", table.c.created_at >= since
        )
    )
    return count or 0
