"""The audit trail: every automatic and staff action, recorded in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from privbot.models import Event, Message, Ticket, utcnow

BOT = "privbot"  # the actor of everything privbot does on its own


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
