"""The one automatic answer to a handled message, composed into the outbox (or held back)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from privbot import act
from privbot.app import App
from privbot.mail.compose import compose_reply, reply_subject
from privbot.mail.parsed import ParsedMessage
from privbot.models import Message, Ticket, utcnow
from privbot.outgoing import queue_outgoing
from privbot.reply_parts import reply_parts
from privbot.tickets import record, replies_sent_since
from privbot.understand import Classification


def queue_answer(
    app: App,
    session: Session,
    message: Message,
    parsed: ParsedMessage,
    ticket: Ticket,
    joined: bool,
    understanding: Classification,
    decision: act.Plan,
) -> int | None:
    """Compose the reply into the outbox, unless the per-sender cap says enough.

    Returns the outbox row's id, or None when the cap held the reply back.
    """
    settings = app.settings
    to = parsed.from_addr or ticket.requester
    since = utcnow() - timedelta(hours=24)
    with session.no_autoflush:  # a count needs none of this message's pending rows
        sent = replies_sent_since(session, to, since)
    if sent >= settings.reply_cap:
        record(
            session, "reply_suppressed", ticket=ticket, message=message,
            reason=f"reply cap: {settings.reply_cap} automatic replies to {to} in 24 hours",
        )  # fmt: skip
        return None
    body = app.replies.render(
        "answer.txt.j2",
        name=parsed.from_name,
        subject=parsed.subject,
        ticket_id=ticket.id,
        address=settings.address,
        requester=to,
        joined=joined,
        needs_staff=decision.needs_staff,
        due_date=ticket.due_at.strftime("%d %B %Y") if ticket.due_at else "",
        parts=reply_parts(app, understanding, decision, joined),
    )
    reply = compose_reply(
        from_addr=settings.address,
        to_addr=to,
        subject=reply_subject(parsed.subject, ticket.id),
        body=body,
        domain=settings.domain,
        in_reply_to=parsed.message_id,
        references=parsed.references,
    )
    row = queue_outgoing(
        session, reply, to_addr=to, kind="auto", ticket_id=ticket.id,
        in_reply_to=parsed.message_id, reply_to_message=message.id,
    )  # fmt: skip
    record(session, "reply_queued", ticket=ticket, message=message, outbox=row)
    return row
