"""Rows as plain dicts, shared by the listings in `queries.py` and the staff views in
`staff_queries.py`: one way to show a ticket, an event, a moment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from privbot.models import Event, Ticket


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def days_left(due: datetime | None, now: datetime) -> int | None:
    if due is None:
        return None
    return (due.date() - now.date()).days


def ticket_dict(t: Ticket, *, sender_verified: bool = True) -> dict[str, Any]:
    """A ticket's fields; `sender_verified=False` leaves that one out (the CLI listing)."""
    out: dict[str, Any] = {
        "id": t.id,
        "ref": f"JC-{t.id}",
        "type": t.type,
        "status": t.status,
        "requester": t.requester,
        "subject": t.subject,
        "intents": list(t.intents or []),
        "language": t.language,
        "assignee": t.assignee,
        "reply_to": t.reply_to,
    }
    if sender_verified:
        out["sender_verified"] = t.sender_verified
    out.update(
        created_at=iso(t.created_at),
        updated_at=iso(t.updated_at),
        due_at=iso(t.due_at),
        closed_at=iso(t.closed_at),
    )
    return out


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "actor": e.actor,
        "kind": e.kind,
        "ticket_id": e.ticket_id,
        "message_id": e.message_id,
        "detail": e.detail,
    }
