"""The opt-out register: who must not get which marketing, recorded, undone, asked and
exported. Writes happen in the caller's transaction, each with an audit event."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from privbot.audit import BOT, record
from privbot.db import like_escape
from privbot.models import Message, Suppression, Ticket, iso, utcnow

# What a person can opt out of; the marketing system asks per scope.
SCOPES = ("marketing_email", "third_party_marketing", "targeted_ads")
# What a spreadsheet takes as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("address", "scope", "since", "by", "ticket_id", "source_message", "withdrawn_at")


def apply(
    session: Session,
    address: str,
    scopes: tuple[str, ...],
    *,
    message: Message | None,
    ticket: Ticket | None,
    actor: str = BOT,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Record suppressions for an address; idempotent. Returns (newly recorded, already there)."""
    new: list[str] = []
    already: list[str] = []
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown opt-out scope {scope!r}")
        row = session.scalar(
            select(Suppression).where(Suppression.address == address, Suppression.scope == scope)
        )
        if row is not None and row.withdrawn_at is None:
            already.append(scope)
            continue
        if row is not None:  # withdrawn earlier, asked for again
            row.withdrawn_at = None
            row.created_at = utcnow()
            row.source_message = message.id if message else None
        else:
            try:
                # A savepoint: another process recording the same opt-out must not undo ours.
                with session.begin_nested():
                    session.add(
                        Suppression(
                            address=address,
                            scope=scope,
                            source_message=message.id if message else None,
                            ticket_id=ticket.id if ticket else None,
                            created_by=actor,
                            created_at=utcnow(),
                        )
                    )
            except IntegrityError:
                already.append(scope)
                continue
        new.append(scope)
    record(
        session, "opt_out_applied", ticket=ticket, message=message, actor=actor,
        address=address, scopes=new, already=already,
    )  # fmt: skip
    return tuple(new), tuple(already)


def withdraw(
    session: Session, address: str, scopes: list[str], *, ticket: Ticket | None, actor: str
) -> tuple[str, ...]:
    """Withdraw suppressions (a mistake, or the person opted in again); recorded."""
    rows = session.scalars(
        select(Suppression).where(
            Suppression.address == address,
            Suppression.scope.in_(scopes),
            Suppression.withdrawn_at.is_(None),
        )
    ).all()
    now = utcnow()
    for row in rows:
        row.withdrawn_at = now
    withdrawn = tuple(s for s in SCOPES if s in {r.scope for r in rows})
    record(
        session, "opt_out_withdrawn", ticket=ticket, actor=actor, address=address,
        scopes=list(withdrawn),
    )  # fmt: skip
    return withdrawn


def active_scopes(session: Session, address: str) -> tuple[str, ...]:
    rows = session.scalars(
        select(Suppression.scope).where(
            Suppression.address == address, Suppression.withdrawn_at.is_(None)
        )
    ).all()
    return tuple(s for s in SCOPES if s in rows)


def status(sessions: sessionmaker[Session], address: str) -> dict[str, Any]:
    """What the marketing system asks: which scopes must this address not get?"""
    address = address.strip().lower()
    with sessions() as session:
        active = set(active_scopes(session, address))
    scopes = [s for s in SCOPES if s in active]
    return {
        "email": address,
        "suppressed": bool(scopes),
        "scopes": scopes,
        "all_scopes": {s: s in active for s in SCOPES},
    }


def register(
    sessions: sessionmaker[Session],
    q: str = "",
    *,
    include_withdrawn: bool = False,
    limit: int | None = 200,
) -> list[dict[str, Any]]:
    """The register as rows, searched by a part of the address."""
    query = select(Suppression).order_by(Suppression.address, Suppression.scope)
    if not include_withdrawn:
        query = query.where(Suppression.withdrawn_at.is_(None))
    q = q.strip().lower()[:320]
    if q:
        query = query.where(Suppression.address.ilike(f"%{like_escape(q)}%", escape="\\"))
    if limit is not None:
        query = query.limit(limit)
    with sessions() as session:
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


def as_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV for a spreadsheet, every cell read as text, never run as a formula."""
    out = io.StringIO()
    # CRLF (RFC 4180) makes the writer quote a cell holding a CR too: unquoted, a CR would
    # start a new row whose first cell escaped the neutralising below.
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _as_text("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    return out.getvalue()


def _as_text(value: object) -> object:
    """A cell that a spreadsheet would take for a formula, with a ' before it (OWASP's
    advice): "=2+5@example.org" is a valid address, and anyone can opt it out."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
