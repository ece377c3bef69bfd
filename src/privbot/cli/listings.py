"""The CLI's listings of tickets, outbox rows and messages, as plain dicts: the JSON that
`privbot tickets|outbox|messages list --json` prints."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from privbot.app import App
from privbot.models import Message, Outgoing, Ticket, iso
from privbot.staff.views import ticket_dict


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
                **ticket_dict(t, sender_verified=False),
                # Message-ID headers of the thread's inbound mail; `messages` has our row ids.
                "message_ids": [m for _, m in thread[t.id] if m],
                "messages": [i for i, _ in thread[t.id]],
            }
            for t in rows
        ]


def outbox(app: App, limit: int = 1000, status: str | None = None) -> list[dict[str, Any]]:
    with app.sessions() as session:
        query = select(Outgoing)
        if status:
            query = query.where(Outgoing.status == status)
        rows = session.scalars(query.order_by(Outgoing.id.desc()).limit(limit)).all()
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
                "created_at": iso(o.created_at),
                "next_attempt_at": iso(o.next_attempt_at),
                "sent_at": iso(o.sent_at),
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
                "received_at": iso(r.received_at),
                "processed_at": iso(r.processed_at),
            }
            for r in rows
        ]
