"""The tables: the nouns staff and auditors ask about.

Times are stored as UTC; `UTCDateTime` hands them back timezone-aware on every backend
(SQLite has no time zones of its own).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; privbot stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """A stored moment as JSON and pages show it."""
    return moment.isoformat() if moment else None


class MessageStatus(StrEnum):
    """What became of an inbound message."""

    RECEIVED = "received"  # stored, not handled yet
    HANDLED = "handled"
    SCREENED = "screened"  # a machine, spam or not understood: never answered
    QUARANTINED = "quarantined"  # cannot be read (too large, broken beyond parsing)
    FAILED = "failed"  # processing failed too often: set aside for staff


class TicketStatus(StrEnum):
    AWAITING_IDENTITY = "awaiting_identity"  # an access request waits for evidence
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    REJECTED = "rejected"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed under a lease
    SENT = "sent"
    FAILED = "failed"  # refused for good: staff see it


class ChatStatus(StrEnum):
    AWAITING_ADDRESS = "awaiting_address"
    LINK_SENT = "link_sent"
    CONFIRMED = "confirmed"


class Base(DeclarativeBase):
    pass


class Message(Base):
    """Every inbound message, stored raw before anything is done with it."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Message-ID plus a hash of the content without transit headers: one message, one row.
    idem_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    source: Mapped[str] = mapped_column(String(16))  # imap, smtp, file
    source_ref: Mapped[str | None] = mapped_column(String(255))
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    # Deferred: handling a message reads what parsing made of it, not the bytes again.
    raw: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    # received -> handled | screened | quarantined | failed
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.RECEIVED)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sender: Mapped[str | None] = mapped_column(String(320), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What our trusted receiving server said of the sender (Authentication-Results), if any.
    auth_result: Mapped[str | None] = mapped_column(String(200))
    # Set when the retention policy replaced the bytes and subject with a placeholder.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_messages_status", "status"),)


class Ticket(Base):
    """A request staff must see to, with the thread of messages that belong to it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32), default="general")
    status: Mapped[str] = mapped_column(String(32), default=TicketStatus.OPEN)
    requester: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    intents: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(8))
    assignee: Mapped[str | None] = mapped_column(String(320))
    # A Reply-To that differs from From is recorded here, never used as a destination.
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # False: DMARC/DKIM/SPF failed for the requester's domain; nothing was done automatically.
    sender_verified: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the retention policy replaced the subject; the facts (type, dates) stay.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the requester's data was erased after a done deletion request (erasure.py):
    # names, addresses and words gone, the facts (type, status, intents, dates) kept.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TicketSearch(Base):
    """A ticket's words as search reads them (search.py), folded to plain lower-case words.
    Indexed by the FTS5 table `ticket_fts` on SQLite and by the generated `tsvector` column
    `vector` (GIN) on PostgreSQL, both made by migration 0009 and not mapped here."""

    __tablename__ = "ticket_search"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    head: Mapped[str] = mapped_column(Text, default="")  # subject and requester
    body: Mapped[str] = mapped_column(Text, default="")  # its messages' new text, bounded


class Event(Base):
    """The audit trail: who did what, when, to which ticket or message, and why."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320), default="privbot")
    kind: Mapped[str] = mapped_column(String(64), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Outgoing(Base):
    """A composed reply waiting in, or gone from, the outbox."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Our Message-ID: fixed when composed, so a resend after a crash is recognisably the same mail.
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    reply_to_message: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    to_addr: Mapped[str] = mapped_column(String(320), index=True)
    # What the reply caps count by (outbox.queue.counted_as): the mailbox `to_addr` reaches,
    # and its domain. NULL only in rows a migration could not read.
    to_key: Mapped[str | None] = mapped_column(String(320))
    to_domain: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(16), default="auto")  # auto or staff
    # pending -> sending -> sent | failed (sending goes back to pending if its lease runs out)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the retention policy replaced the copy and subject with a placeholder.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)


class Suppression(Base):
    """An address that must get no marketing of one scope: what JunoCloud's marketing asks."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    # marketing_email, third_party_marketing or targeted_ads
    scope: Mapped[str] = mapped_column(String(32))
    source_message: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_by: Mapped[str] = mapped_column(String(320), default="privbot")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when staff undo it; applying it again clears it. One row per address and scope.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("address", "scope", name="uq_suppressions_address_scope"),)


class Staff(Base):
    """A person who works the queue on the web or with the CLI."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, never the password
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A signed-in browser. Kept server-side so logout and disabling end it at once."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the cookie's token
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """A failed login, per account and per client, to slow down guessing."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))  # "email:<address>" or "client:<ip>"
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)


class ApiToken(Base):
    """A bearer token for a machine (JunoCloud's marketing system); only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated, as OAuth writes them: "suppressions:read", "suppressions:write".
    scopes: Mapped[str] = mapped_column(
        String(200), default="suppressions:read", server_default="suppressions:read"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Example(Base):
    """A staff correction: this text means this intent. The classifier loads these at start."""

    __tablename__ = "examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatRequest(Base):
    """Something a chat visitor asked us to do, waiting for the address owner's confirmation.

    awaiting_address -> link_sent -> confirmed; nothing is done before `confirmed`.
    """

    __tablename__ = "chat_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session: Mapped[str] = mapped_column(String(64), index=True)
    text: Mapped[str] = mapped_column(Text)
    intents: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(320), index=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=ChatStatus.AWAITING_ADDRESS)
    client: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    link_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))


class LegalHold(Base):
    """Staff's order that nothing of one person's be erased or redacted while it is on (a
    dispute, a court case, an authority's inquiry). Placed on a ticket (its requester) or
    on a person (an address); released, never deleted: placing and release are audit facts.
    """

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # A person's hold: their address as the outbox counts it (case, +tags, Gmail's dots off).
    address: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(320))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(320))

    __table_args__ = (
        CheckConstraint(
            "(ticket_id IS NULL) <> (address IS NULL)", name="ck_legal_holds_one_target"
        ),
    )


# The queue reads open tickets in due order; a partial index keeps that fast at 100,000 rows.
Index(
    "ix_tickets_open_due",
    Ticket.due_at,
    Ticket.id,
    sqlite_where=Ticket.closed_at.is_(None),
    postgresql_where=Ticket.closed_at.is_(None),
)
# The queue sorted by last change (open tickets, or all) and by creation.
Index(
    "ix_tickets_open_updated",
    Ticket.updated_at,
    Ticket.id,
    sqlite_where=Ticket.closed_at.is_(None),
    postgresql_where=Ticket.closed_at.is_(None),
)
Index("ix_tickets_updated", Ticket.updated_at, Ticket.id)
Index("ix_tickets_created", Ticket.created_at, Ticket.id)
# The queue's "requester replied" reads its page's messages from the index alone.
Index("ix_messages_ticket_status_at", Message.ticket_id, Message.status, Message.received_at)
Index("ix_events_actor_at", Event.actor, Event.at)
Index("ix_suppressions_created", Suppression.created_at)


def outbox_status_is(status: OutboxStatus) -> ColumnElement[bool]:
    """`Outgoing.status == status` with the value in the SQL text. Nearly every reply is
    `sent`, and a planner given a bound status assumes the average status, so it reads the
    whole outbox; only a literal lets it use the partial indexes below."""
    return Outgoing.status == literal_column(f"'{OutboxStatus(status).value}'")


# What the sender looks for among every reply ever kept (a table that grows with the years):
# the few unsent ones.
Index(
    "ix_outbox_pending_due",
    Outgoing.next_attempt_at,
    Outgoing.id,
    sqlite_where=text("status = 'pending'"),
    postgresql_where=text("status = 'pending'"),
)
# The reply caps count one mailbox's and one domain's automatic replies of the last hours
# before every reply: an index range each (the kind inside, so the table is not read), never
# the window's replies to everyone.
Index("ix_outbox_counted_key", Outgoing.to_key, Outgoing.kind, Outgoing.created_at)
Index("ix_outbox_counted_domain", Outgoing.to_domain, Outgoing.kind, Outgoing.created_at)


Index(
    "ix_outbox_sending_lease",
    Outgoing.lease_until,
    Outgoing.id,
    sqlite_where=text("status = 'sending'"),
    postgresql_where=text("status = 'sending'"),
)
