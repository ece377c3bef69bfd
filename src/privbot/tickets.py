"""Tickets: the reference and its subject tag, the statuses, opening one, finding the thread
a message continues, due dates."""

from __future__ import annotations

import calendar
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot import search
from privbot.mail.compose import SUBJECT_LIMIT, one_line, strip_prefixes
from privbot.models import Message, Outgoing, Ticket, TicketStatus, utcnow

# The reference people see ("JC-12") and the subject tag that carries it ("[JC-12]").
REF_PREFIX = "JC-"
TAG = re.compile(r"\[JC-(\d+)\]", re.IGNORECASE)
# What staff type for one: "JC-12", "jc12", "JC 12", "#12", "12" (ASCII digits only).
REF = re.compile(r"(?:JC[-\s]?|#)?([0-9]+)", re.IGNORECASE)

# The statuses a ticket of each type moves through; the first is where it starts.
STATUSES: dict[str, tuple[TicketStatus, ...]] = {
    "access": (
        TicketStatus.AWAITING_IDENTITY, TicketStatus.IN_PROGRESS, TicketStatus.DONE,
        TicketStatus.REJECTED,
    ),
}  # fmt: skip
DEFAULT_STATUSES = (
    TicketStatus.OPEN, TicketStatus.IN_PROGRESS, TicketStatus.DONE, TicketStatus.REJECTED
)  # fmt: skip
CLOSED = frozenset({TicketStatus.DONE, TicketStatus.REJECTED})
# Requests about a person's own data: whoever acts on one must first know it is them.
IDENTITY_TYPES = frozenset({"access", "deletion", "correction"})


def ref(ticket_id: int) -> str:
    return f"{REF_PREFIX}{ticket_id}"


def parse_ref(text: str) -> int | None:
    """The ticket id in "JC-12", "jc-12", "jc12", "#12" or "12"; None if it is not one."""
    match = REF.fullmatch(text.strip())
    return int(match.group(1)) if match and len(match.group(1)) < 10 else None


def reply_subject(original: str, ticket_id: int) -> str:
    """'Re: <original> [JC-<id>]', without stacking prefixes or tags."""
    # One short line whatever came in: line breaks would break the header, and a long
    # subject is the sender's text repeated by us to whatever From was forged.
    base = " ".join(TAG.sub("", one_line(original or "")).split())
    base = one_line(strip_prefixes(base), SUBJECT_LIMIT) or "Your message"
    return f"Re: {base} [{ref(ticket_id)}]"


def statuses_for(ticket_type: str) -> tuple[TicketStatus, ...]:
    return STATUSES.get(ticket_type, DEFAULT_STATUSES)


def add_months(moment: datetime, months: int) -> datetime:
    """Same day `months` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def open_ticket(
    session: Session,
    *,
    requester: str,
    subject: str,
    received_at: datetime,
    due_months: int,
    type: str = "general",
    status: str = TicketStatus.OPEN,
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
    search.index(session, ticket)
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
    for match in TAG.finditer(subject or ""):
        ticket = session.get(Ticket, int(match.group(1)))
        if ticket is not None and ticket.closed_at is None and ticket.requester == sender:
            return ticket, "subject tag"
    return None, ""
