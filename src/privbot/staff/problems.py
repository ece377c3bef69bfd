"""Mail that went wrong, for staff: messages set aside (quarantined, failed) and replies
the relay refused or privbot gave up on, each with its reason, and putting them through
again (`privbot messages retry`, `privbot outbox retry`) once the cause is fixed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from privbot import pipeline
from privbot.app import App
from privbot.mail.decode import decode_header_value
from privbot.models import Message, MessageStatus, OutboxStatus, Outgoing, iso
from privbot.outbox.queue import RetryError, retry_failed
from privbot.tickets import ref

LIMIT = 200  # rows of each kind a page shows, newest first; the total is said
HEAD_BYTES = 64 * 1024  # of a message privbot could not read, what is read for From/Subject
SET_ASIDE = (MessageStatus.QUARANTINED, MessageStatus.FAILED)


class ProblemError(ValueError):
    """A retry cannot be done as asked; the message says why."""


def problems(app: App, limit: int = LIMIT) -> dict[str, Any]:
    """Quarantined and failed messages and failed replies, newest first, with the counts."""
    with app.sessions() as session:
        message_count = session.scalar(
            select(func.count()).select_from(Message).where(Message.status.in_(SET_ASIDE))
        )
        reply_count = session.scalar(
            select(func.count()).select_from(Outgoing).where(Outgoing.status == OutboxStatus.FAILED)
        )
        messages = session.execute(
            select(
                Message.id,
                Message.status,
                Message.reason,
                Message.sender,
                Message.envelope_from,
                Message.subject,
                Message.source,
                Message.size,
                Message.attempts,
                Message.ticket_id,
                Message.received_at,
                Message.processed_at,
            )  # not the bytes: one mail set aside may be 25 MB
            .where(Message.status.in_(SET_ASIDE))
            .order_by(Message.id.desc())
            .limit(limit)
        ).all()
        unread = [m.id for m in messages if not (m.sender and m.subject)]
        heads = _heads(session, unread)
        replies = session.scalars(
            select(Outgoing)
            .where(Outgoing.status == OutboxStatus.FAILED)
            .order_by(Outgoing.id.desc())
            .limit(limit)
        ).all()
        return {
            "messages": [_message(m, heads.get(m.id, {})) for m in messages],
            "replies": [_reply(o) for o in replies],
            "message_count": message_count or 0,
            "reply_count": reply_count or 0,
            "limit": limit,
        }


def _message(m: Any, head: dict[str, str]) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status,
        "reason": m.reason or "",
        # What privbot read of it, else what its headers say (unverified, as From always is).
        "sender": _decoded(m.sender) or head.get("from") or m.envelope_from or "",
        "subject": _decoded(m.subject) or head.get("subject") or "",
        "source": m.source,
        "size": m.size,
        "attempts": m.attempts,
        "ticket": ref(m.ticket_id) if m.ticket_id else None,
        "ticket_id": m.ticket_id,
        "received_at": iso(m.received_at),
        "processed_at": iso(m.processed_at),
    }


def _decoded(value: str | None) -> str:
    """A header value as stored at intake (raw: encoded words, folds) as people read it."""
    if not value:
        return ""
    try:
        return " ".join(decode_header_value(value).split())[:300]
    except Exception:  # hostile encoded words: the raw text is still something to show
        return " ".join(value.split())[:300]


def _reply(o: Outgoing) -> dict[str, Any]:
    return {
        "id": o.id,
        "to": o.to_addr,
        "subject": o.subject,
        "kind": o.kind,
        "reason": o.last_error or "",
        "attempts": o.attempts,
        "ticket": ref(o.ticket_id) if o.ticket_id else None,
        "ticket_id": o.ticket_id,
        "created_at": iso(o.created_at),
        "retryable": o.redacted_at is None,
    }


def _heads(session: Session, ids: list[int]) -> dict[int, dict[str, str]]:
    """From and Subject of messages whose row lacks them (no usable sender, headers intake
    could not read), from the start of their bytes: only lines are looked at, so a mail
    that crashed the parser cannot crash this page."""
    if not ids:
        return {}
    rows = session.execute(
        select(Message.id, func.substr(Message.raw, 1, HEAD_BYTES)).where(Message.id.in_(ids))
    ).all()
    return {message_id: _head(bytes(start or b"")) for message_id, start in rows}


def _head(start: bytes) -> dict[str, str]:
    text = start.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: dict[str, str] = {}
    current: str | None = None  # the kept header a folded line continues
    for line in text.split("\n"):
        if line[:1] in (" ", "\t"):
            if current is not None:
                fields[current] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        current = None
        if colon and name in ("from", "subject") and name not in fields:
            fields[name] = value.strip()
            current = name
    return {key: _decoded(value) for key, value in fields.items()}


def retry_message(app: App, message_id: int, *, actor: str) -> pipeline.Outcome:
    """Put a quarantined or failed message through the pipeline again (as `messages retry`)."""
    try:
        return pipeline.retry(app, message_id, actor=actor)
    except pipeline.RetryError as exc:
        raise ProblemError(str(exc)) from None


def retry_reply(app: App, outbox_id: int, *, actor: str) -> int:
    """Put a failed reply back in the outbox queue; the sender delivers it. Returns its id."""
    try:
        with app.sessions.begin() as session:
            row = retry_failed(session, outbox_id, actor=actor)
            row_id = row.id
    except RetryError as exc:
        raise ProblemError(str(exc)) from None
    app.outbox_ready.set()
    return row_id
