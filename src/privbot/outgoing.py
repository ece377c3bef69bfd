"""A composed mail as a new pending row of the outbox (the sender in `outbox.py` sends it)."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from privbot.mail.compose import Reply, as_bytes
from privbot.models import Outgoing, utcnow


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
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )
    return int(result.inserted_primary_key[0])
