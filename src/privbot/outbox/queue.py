"""Putting mail into the outbox: a composed mail as a new pending row (`sender.py` sends it),
and the count of automatic replies an address got, which the reply cap reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from privbot.mail.compose import Reply, as_bytes
from privbot.models import OutboxStatus, Outgoing, utcnow


def queue_outgoing(
    session: Session,
    mail: Reply,
    *,
    to_addr: str,
    kind: str,
    ticket_id: int | None = None,
    in_reply_to: str | None = None,
    reply_to_message: int | None = None,
) -> int:
    """Queue `mail` for sending now, in the caller's transaction; returns the row's id.

    A plain INSERT rather than an ORM object: the row is only ever changed by the sender,
    and the unit of work's bookkeeping cost more than the insert itself.
    """
    now = utcnow()
    result = session.connection().execute(
        insert(Outgoing.__table__),
        {
            "message_id": mail.message_id,
            "ticket_id": ticket_id,
            "reply_to_message": reply_to_message,
            "in_reply_to": in_reply_to,
            "to_addr": to_addr,
            "subject": mail.subject,
            "raw": as_bytes(mail.message),
            "kind": kind,
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return int(result.inserted_primary_key[0])


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
