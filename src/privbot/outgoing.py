"""A composed mail as a new pending row of the outbox (the sender in `outbox.py` sends it)."""

from __future__ import annotations

from privbot.mail.compose import Reply
from privbot.models import Outgoing, utcnow


def pending_outgoing(
    mail: Reply,
    *,
    to_addr: str,
    kind: str,
    ticket_id: int | None = None,
    in_reply_to: str | None = None,
    reply_to_message: int | None = None,
) -> Outgoing:
    """The row that queues `mail` for sending now; the caller adds it to its session."""
    now = utcnow()
    return Outgoing(
        message_id=mail.message_id,
        ticket_id=ticket_id,
        reply_to_message=reply_to_message,
        in_reply_to=in_reply_to,
        to_addr=to_addr,
        subject=mail.subject,
        raw=mail.message.as_bytes(),
        kind=kind,
        status="pending",
        next_attempt_at=now,
        created_at=now,
    )
