"""What the staff actions in `review.py` and the reply drafting in `review_replies.py`
share: the error they raise, the length limit, and reading a ticket and its thread."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot.mail.parse import ParseError, parse_message
from privbot.models import Message, Ticket, utcnow

MAX_BODY = 20_000


class ReviewError(ValueError):
    """The action cannot be done as asked; the message says why."""


def locked_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id, with_for_update=True)
    if ticket is None:
        raise ReviewError(f"no ticket JC-{ticket_id}")
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


def date_text(moment: datetime | None) -> str:
    return moment.strftime("%d %B %Y") if moment else ""
