"""Retention: personal content is not kept for ever, the audit facts are.

A run redacts the raw mail, reply copies and subjects of tickets closed more than
`retain_closed_days` ago (and of ticketless handled or screened mail received that long
ago), deletes chat requests never confirmed and the client IPs of confirmed ones after
`retain_chat_days`, and failed sign-in records after `retain_signin_days`. What was asked,
when and what was done (tickets' type, status and dates, the audit trail, message sizes and
ids) stays. Each run records one `retention_run` event with counts, never content.

A run first erases the people whose deletion request was done longer ago than
`deletion_hold_days` (`erasure.py`), and leaves alone everything of a person under a legal
hold: neither erased nor redacted while it is on.

Identity evidence: `retain_evidence_days` after staff marked a ticket's evidence checked (an
`evidence_checked` event, who and when: staff/evidence.py), every attachment of the
ticket's mail received up to that check is replaced by a short note; one
`evidence_removed` event per ticket says how many, and the check stays as it was.

Redacted mail keeps a small placeholder message, so the ticket page still shows the thread.
Rows are done in small transactions (SQLite has one writer; mail keeps flowing meanwhile),
and a run is idempotent: `redacted_at` marks what is done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from privbot import erasure, search
from privbot.app import App
from privbot.audit import record
from privbot.erasure import excluding
from privbot.mail.parse import ParseError, remove_attachments
from privbot.models import (
    ChatRequest,
    ChatStatus,
    Event,
    LoginFailure,
    Message,
    MessageStatus,
    OutboxStatus,
    Outgoing,
    Ticket,
    iso,
    utcnow,
)
from privbot.outbox.queue import address_key

log = logging.getLogger(__name__)

CHUNK = 200  # rows per transaction: short write locks
DAY = 24 * 3600.0
# The audit events of identity evidence: staff checked it; the run removed it after.
EVIDENCE_CHECKED = "evidence_checked"
EVIDENCE_REMOVED = "evidence_removed"
EVIDENCE_NOTE = "attachment removed after the evidence was checked"


@dataclass(frozen=True)
class RetentionReport:
    messages_redacted: int = 0
    replies_redacted: int = 0
    tickets_redacted: int = 0
    chat_requests_deleted: int = 0
    chat_clients_cleared: int = 0
    signin_failures_deleted: int = 0
    people_erased: int = 0
    erasures_on_hold: int = 0
    erasures_waiting: int = 0
    evidence_attachments_removed: int = 0
    evidence_on_hold: int = 0

    def describe(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in asdict(self).items())


def placeholder(days: int) -> str:
    return f"[removed after {days} days under the retention policy]"


def run(app: App, now: datetime | None = None) -> RetentionReport:
    """Apply the retention policy once; returns what was done (also in the audit trail)."""
    s = app.settings
    now = now or utcnow()
    closed_before = now - timedelta(days=s.retain_closed_days)
    chat_before = now - timedelta(days=s.retain_chat_days)
    note = placeholder(s.retain_closed_days)
    erased = erasure.erase_due(app, now)
    with app.sessions() as session:
        held = erasure.held_scope(session)
    evidence_removed, evidence_held = _remove_evidence(app, now, held.tickets)

    old_ticket = select(Ticket.id).where(
        Ticket.closed_at.is_not(None), Ticket.closed_at < closed_before
    )
    done = (MessageStatus.HANDLED, MessageStatus.SCREENED)
    messages = _redact_rows(
        app,
        Message,
        and_(
            or_(
                Message.ticket_id.in_(old_ticket),
                # Mail that never became a ticket (screened machines, answered questions).
                and_(
                    Message.ticket_id.is_(None),
                    Message.status.in_(done),
                    Message.received_at < closed_before,
                ),
            ),
            *excluding(Message.id, held.messages),
        ),
        lambda m: (_message_placeholder(m, note), note),
        now,
    )
    finished = (OutboxStatus.SENT, OutboxStatus.FAILED)  # never a reply still to be sent
    replies = _redact_rows(
        app,
        Outgoing,
        and_(
            Outgoing.status.in_(finished),
            or_(
                Outgoing.ticket_id.in_(old_ticket),
                # Chat confirmation links carry no ticket; they matter only for a day.
                and_(Outgoing.kind == "confirm", Outgoing.created_at < chat_before),
            ),
            *excluding(Outgoing.id, held.replies),
        ),
        lambda o: _reply_placeholder(
            o, placeholder(s.retain_chat_days) if o.kind == "confirm" else note
        ),
        now,
    )
    with app.sessions.begin() as session:
        tickets = _count(
            session,
            update(Ticket)
            .where(
                Ticket.closed_at.is_not(None),
                Ticket.closed_at < closed_before,
                Ticket.redacted_at.is_(None),
                *excluding(Ticket.id, held.tickets),
            )
            .values(subject=note, redacted_at=now),
        )
        # Their words leave the search index with them.
        search.forget(session, Ticket.redacted_at == now)
        # A confirmed chat request's text went into a message; it goes with that message.
        session.execute(
            update(ChatRequest)
            .where(
                ChatRequest.message_id.in_(
                    select(Message.id).where(Message.redacted_at.is_not(None))
                ),
                ChatRequest.text != note,
                # An erased person's request already says so (erasure.py).
                ChatRequest.text.not_like(f"{erasure.NOTE_START}%"),
            )
            .values(text=note)
        )
        old_chat = and_(
            ChatRequest.created_at < chat_before, *excluding(ChatRequest.id, held.chats)
        )
        chat_deleted = _count(
            session,
            delete(ChatRequest).where(old_chat, ChatRequest.status != ChatStatus.CONFIRMED),
        )
        chat_cleared = _count(
            session,
            update(ChatRequest)
            .where(old_chat, ChatRequest.client.is_not(None))
            .values(client=None),
        )
        signins = _count(
            session,
            delete(LoginFailure).where(
                LoginFailure.at < now - timedelta(days=s.retain_signin_days)
            ),
        )
        report = RetentionReport(
            messages_redacted=messages,
            replies_redacted=replies,
            tickets_redacted=tickets,
            chat_requests_deleted=chat_deleted,
            chat_clients_cleared=chat_cleared,
            signin_failures_deleted=signins,
            **asdict(erased),
            evidence_attachments_removed=evidence_removed,
            evidence_on_hold=evidence_held,
        )
        record(
            session,
            "retention_run",
            **asdict(report),
            retain_closed_days=s.retain_closed_days,
            retain_chat_days=s.retain_chat_days,
            retain_signin_days=s.retain_signin_days,
            deletion_hold_days=s.deletion_hold_days,
            retain_evidence_days=s.retain_evidence_days,
        )
    return report


def _remove_evidence(app: App, now: datetime, held: frozenset[int]) -> tuple[int, int]:
    """Take the attachments out of the mail of every ticket whose evidence was checked
    `retain_evidence_days` ago and not removed since; (attachments removed, tickets held)."""
    before = now - timedelta(days=app.settings.retain_evidence_days)
    with app.sessions() as session:
        checks = _latest(session, EVIDENCE_CHECKED)
        removals = _latest(session, EVIDENCE_REMOVED)
    # A check after the last removal covers mail that came since: it is due again.
    due = sorted(
        t for t, at in checks.items() if at <= before and (t not in removals or removals[t] < at)
    )
    removed = on_hold = 0
    for ticket_id in due:
        if ticket_id in held:
            on_hold += 1
            continue
        count = _remove_ticket_evidence(app, ticket_id)
        if count is None:
            on_hold += 1
        else:
            removed += count
    return removed, on_hold


def _latest(session: Session, kind: str) -> dict[int, datetime]:
    """Per ticket, when its last event of `kind` was recorded."""
    rows = session.execute(
        select(Event.ticket_id, func.max(Event.at))
        .where(Event.kind == kind, Event.ticket_id.is_not(None))
        .group_by(Event.ticket_id)
    ).all()
    return {ticket_id: at for ticket_id, at in rows if at is not None}


def _remove_ticket_evidence(app: App, ticket_id: int) -> int | None:
    """One ticket's removal in one transaction; None if a hold was placed meanwhile."""
    with app.sessions.begin() as session:
        ticket = session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            return 0
        if ticket.erased_at is None and address_key(ticket.requester) in erasure.held_keys(session):
            return None
        check = session.scalars(
            select(Event)
            .where(Event.ticket_id == ticket_id, Event.kind == EVIDENCE_CHECKED)
            .order_by(Event.at.desc(), Event.id.desc())
            .limit(1)
        ).one()
        # Only what staff could have seen when they checked; later mail waits for its check.
        messages = session.scalars(
            select(Message)
            .where(
                Message.ticket_id == ticket_id,
                Message.redacted_at.is_(None),
                Message.received_at <= check.at,
            )
            .order_by(Message.id)
        ).all()
        removed, changed = 0, []
        for message in messages:
            try:
                raw, count = remove_attachments(message.raw, EVIDENCE_NOTE)
            except ParseError:
                continue  # nothing can be read in it: it lists no attachment either
            if count:
                message.raw = raw
                removed += count
                changed.append(message.id)
        # Recorded even when nothing was left to remove: the check is then fulfilled.
        record(
            session, EVIDENCE_REMOVED, ticket=ticket_id, attachments=removed, messages=changed,
            checked_by=check.actor, checked_at=iso(check.at),
            retain_evidence_days=app.settings.retain_evidence_days,
        )  # fmt: skip
        return removed


def run_daily(app: App, stop: threading.Event, every: float = DAY) -> None:
    """`privbot serve`'s retention worker: a run at start, then one a day, until stopped."""
    while not stop.is_set():
        try:
            report = run(app)
            log.info("retention: %s", report.describe())
        except Exception:
            log.exception("retention: run failed; trying again in a day")
        stop.wait(every)


def _count(session: Session, statement: Executable) -> int:
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)


def _redact_rows(
    app: App,
    table: type[Message] | type[Outgoing],
    where: ColumnElement[bool],
    make: Callable[[Any], tuple[bytes, str]],
    now: datetime,
) -> int:
    """Replace raw bytes and subject of every matching row not yet redacted, CHUNK at a time."""
    total = 0
    while True:
        with app.sessions.begin() as session:
            rows = session.scalars(
                select(table)
                .where(where, table.redacted_at.is_(None))
                .order_by(table.id)
                .limit(CHUNK)
            ).all()
            for row in rows:
                row.raw, row.subject = make(row)
                row.redacted_at = now
        total += len(rows)
        if len(rows) < CHUNK:
            return total


def _message_placeholder(m: Message, note: str) -> bytes:
    """A tiny message in place of the mail: who and when stay (audit facts), the words go."""
    msg = EmailMessage()
    msg["From"] = m.sender or m.envelope_from or "unknown@invalid"
    msg["Date"] = format_datetime(m.received_at)
    msg["Subject"] = note
    if m.message_id:
        msg["Message-ID"] = f"<{m.message_id.strip('<>')}>"
    msg.set_content(note + "\n")
    return msg.as_bytes()


def _reply_placeholder(o: Outgoing, note: str) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["To"] = o.to_addr
    msg["Subject"] = note
    msg["Message-ID"] = f"<{o.message_id.strip('<>')}>"
    msg.set_content(note + "\n")
    return msg.as_bytes(), note
