"""Putting mail into the outbox: a composed mail as a new pending row (`sender.py` sends it),
a failed reply back in the queue (staff's retry), and the counts of automatic replies a
mailbox and its domain got, which the reply cap reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import Session

from privbot.audit import record
from privbot.mail.compose import Reply, as_bytes
from privbot.models import OutboxStatus, Outgoing, iso, utcnow

# Providers that deliver "j.o.e@" to "joe@", and their domains that are one mailbox.
DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


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
            **counted_as(to_addr),
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


class RetryError(ValueError):
    """The reply cannot be put back in the queue; the message says why."""


def retry_failed(session: Session, outbox_id: int, *, actor: str) -> Outgoing:
    """Put a failed reply back in the queue, due now, in the caller's transaction (recorded
    as `reply_retried`): after staff fixed the cause (the relay, an address, SMTPUTF8).

    It is queued afresh: attempts from zero and the give-up clock (PRIVBOT_SEND_GIVE_UP_HOURS,
    counted from `created_at`) restarted, else its next temporary failure would fail it at
    once; when it was first queued and the last error stay in the event.
    """
    row = session.get(Outgoing, outbox_id, with_for_update=True)
    if row is None:
        raise RetryError(f"no reply #{outbox_id} in the outbox")
    if row.status != OutboxStatus.FAILED:
        raise RetryError(f"reply #{outbox_id} is {row.status}: only a failed reply is retried")
    if row.redacted_at is not None:
        # Its copy is a placeholder now (retention or erasure): that must never be sent.
        raise RetryError(f"reply #{outbox_id} was removed under the retention policy")
    previous = {"queued_at": iso(row.created_at), "attempts": row.attempts,
                "error": row.last_error}  # fmt: skip
    now = utcnow()
    row.status = OutboxStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = now
    row.created_at = now
    row.lease_until = None
    row.last_error = None
    record(session, "reply_retried", ticket=row.ticket_id, actor=actor, outbox=row.id,
           **previous)  # fmt: skip
    return row


def address_key(address: str) -> str:
    """The mailbox an address reaches, for counting: case, +tags and Gmail's dots removed.

    Only for the limits: mail goes to the address as given.
    """
    local, _, domain = address.strip().lower().rpartition("@")
    domain = domain.rstrip(".")
    local = local.partition("+")[0]
    if domain in DOTLESS:
        local, domain = local.replace(".", ""), DOTLESS[domain]
    return f"{local}@{domain}"


def domains_of(key: str) -> list[str]:
    """The domains that reach the same mailboxes as the (normalised) key's domain."""
    domain = key.rpartition("@")[2]
    return sorted(d for d, same in DOTLESS.items() if same == domain) or [domain]


@dataclass(frozen=True)
class RepliesSent:
    mailbox: int  # to the address's mailbox, however it was spelled
    domain: int  # to any address at its domain


def counted_as(to_addr: str) -> dict[str, str]:
    """The outbox columns the reply caps count an address by: its mailbox and domain."""
    key = address_key(to_addr)
    return {"to_key": key, "to_domain": key.rpartition("@")[2]}


def replies_sent_since(
    session: Session, address: str, since: datetime, *, domain_limit: int | None = None
) -> RepliesSent:
    """Automatic replies queued since a moment to an address's mailbox and to its domain:
    what the reply caps count. The domain's count stops at `domain_limit` (all a cap needs
    to know), so a free-mail domain's day of replies is never counted whole."""
    table = Outgoing.__table__
    counted = counted_as(address)
    recent = (table.c.kind == "auto", table.c.created_at >= since)
    to_domain = select(literal(1)).where(*recent, table.c.to_domain == counted["to_domain"])
    if domain_limit is not None:
        to_domain = to_domain.limit(domain_limit)
    # Core on the session's connection: the ORM's execute path cost more than the queries.
    conn = session.connection()
    mailbox = conn.scalar(select(func.count()).where(*recent, table.c.to_key == counted["to_key"]))
    domain = conn.scalar(select(func.count()).select_from(to_domain.subquery()))
    return RepliesSent(mailbox or 0, domain or 0)
