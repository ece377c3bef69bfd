"""Read-only views of the tables as plain dicts: the JSON contracts of the CLI (and the web).

Here: the CLI's listings and the opt-out register. The staff queue, ticket page and audit
log are in `staff_queries.py`, importable from here as before.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from privbot.act import SCOPES
from privbot.app import App
from privbot.models import Message, Outgoing, Suppression, Ticket
from privbot.query_rows import iso, like_escape, ticket_dict
from privbot.staff_queries import (
    QUEUE_PAGE,
    QueueFilter,
    audit_log,
    queue,
    queue_choices,
    ticket_detail,
)


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


def outbox(app: App, limit: int = 1000) -> list[dict[str, Any]]:
    with app.sessions() as session:
        rows = session.scalars(select(Outgoing).order_by(Outgoing.id.desc()).limit(limit)).all()
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


# -- the opt-out register -----------------------------------------------------------------


def suppressions(
    app: App, q: str = "", *, include_withdrawn: bool = False, limit: int | None = 200
) -> list[dict[str, Any]]:
    query = select(Suppression).order_by(Suppression.address, Suppression.scope)
    if not include_withdrawn:
        query = query.where(Suppression.withdrawn_at.is_(None))
    q = q.strip().lower()[:320]
    if q:
        query = query.where(Suppression.address.ilike(f"%{like_escape(q)}%", escape="\\"))
    if limit is not None:
        query = query.limit(limit)
    with app.sessions() as session:
        return [
            {
                "address": s.address,
                "scope": s.scope,
                "since": iso(s.created_at),
                "by": s.created_by,
                "ticket_id": s.ticket_id,
                "source_message": s.source_message,
                "withdrawn_at": iso(s.withdrawn_at),
            }
            for s in session.scalars(query)
        ]


SUPPRESSION_CSV = ("address", "scope", "since", "by", "ticket_id", "source_message", "withdrawn_at")


def suppressions_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUPPRESSION_CSV, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in SUPPRESSION_CSV})
    return out.getvalue()


def suppression_status(app: App, address: str) -> dict[str, Any]:
    """What the marketing system asks: which scopes must this address not get?"""
    address = address.strip().lower()
    with app.sessions() as session:
        active = set(
            session.scalars(
                select(Suppression.scope).where(
                    Suppression.address == address, Suppression.withdrawn_at.is_(None)
                )
            )
        )
    scopes = [s for s in SCOPES if s in active]
    return {
        "email": address,
        "suppressed": bool(scopes),
        "scopes": scopes,
        "all_scopes": {s: s in active for s in SCOPES},
    }


__all__ = [
    "QUEUE_PAGE",
    "SUPPRESSION_CSV",
    "QueueFilter",
    "audit_log",
    "messages",
    "outbox",
    "queue",
    "queue_choices",
    "suppression_status",
    "suppressions",
    "suppressions_csv",
    "ticket_detail",
    "tickets",
]
