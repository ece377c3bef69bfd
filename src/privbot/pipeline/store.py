"""Store first: raw bytes in, one row per distinct message, before anything is acted on.

The same message often arrives twice with different trace headers (an IMAP re-fetch after a
crash, an SMTP retry, a copy delivered to two of our addresses). The idempotency key is a
hash of the message without the headers added in transit, so those collapse into one row,
while a reused Message-ID on different content stays a different message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from privbot.db import durably
from privbot.mail.headers import message_id_of
from privbot.models import Message

# Headers that relays and delivery agents add or rewrite on the way in.
TRANSIT_HEADERS = frozenset(
    {
        "received",
        "return-path",
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "authentication-results",
        "received-spf",
        "x-received",
        "x-envelope-from",
        "x-envelope-to",
        "x-rcpt-to",
        "x-uid",
        "status",
        "x-status",
        "x-keywords",
        "content-length",
        "lines",
    }
)
TRANSIT_PREFIXES = ("arc-", "x-spam", "x-virus", "x-ms-exchange-organization", "x-google-smtp")


@dataclass(frozen=True)
class Stored:
    id: int
    new: bool  # False: this message was already stored (a duplicate delivery)


def idempotency_key(raw: bytes) -> str:
    """sha256 over the message's own headers and body, newline-normalised."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, body = raw, b""
    digest = hashlib.sha256()
    name = b""
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # folded continuation of the previous header
            if _kept(name):
                digest.update(b" " + line.strip())
            continue
        if line.startswith(b"From "):  # mbox separator, not a header
            continue
        name = line.partition(b":")[0].strip().lower()
        if _kept(name):
            digest.update(b"\n" + line.rstrip())
    digest.update(b"\n\n" + body.rstrip(b"\n"))
    return digest.hexdigest()


def _kept(name: bytes) -> bool:
    text = name.decode("ascii", "replace")
    return text not in TRANSIT_HEADERS and not text.startswith(TRANSIT_PREFIXES)


def store_message(
    sessions: sessionmaker[Session],
    raw: bytes,
    *,
    source: str,
    source_ref: str | None = None,
    envelope_from: str | None = None,
) -> Stored:
    """Store raw bytes durably (committed when this returns) unless already stored."""
    key = idempotency_key(raw)
    with sessions() as session:
        durably(session)  # SMTP says 250 on the strength of this commit
        existing = session.scalar(select(Message.id).where(Message.idem_key == key))
        if existing is not None:
            return Stored(existing, new=False)
        message_id, sender, subject = _summary(raw)
        row = Message(
            idem_key=key,
            message_id=message_id,
            source=source,
            source_ref=source_ref,
            envelope_from=envelope_from,
            size=len(raw),
            raw=raw,
            sender=sender,
            subject=subject,
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            # Another process stored the same message a moment ago: that row is the one.
            session.rollback()
            existing = session.scalar(select(Message.id).where(Message.idem_key == key))
            if existing is None:
                raise
            return Stored(existing, new=False)
        return Stored(row.id, new=True)


def store_messages(
    sessions: sessionmaker[Session], items: list[tuple[bytes, str | None]], *, source: str
) -> list[Stored]:
    """Store a batch (raw, source_ref) in ONE transaction: one commit instead of one each."""
    keys = [idempotency_key(raw) for raw, _ in items]
    try:
        with sessions.begin() as session:
            durably(session)
            existing = dict(
                session.execute(
                    select(Message.idem_key, Message.id).where(Message.idem_key.in_(set(keys)))
                ).all()
            )
            rows: dict[str, Message] = {}
            for key, (raw, ref) in zip(keys, items, strict=True):
                if key in existing or key in rows:
                    continue
                message_id, sender, subject = _summary(raw)
                rows[key] = Message(
                    idem_key=key, message_id=message_id, source=source, source_ref=ref,
                    size=len(raw), raw=raw, sender=sender, subject=subject,
                )  # fmt: skip
                session.add(rows[key])
            session.flush()
            new_ids = {key: row.id for key, row in rows.items()}
    except IntegrityError:
        # Another process stored some of them meanwhile: one by one sorts it out.
        return [store_message(sessions, raw, source=source, source_ref=ref) for raw, ref in items]
    out: list[Stored] = []
    seen: set[str] = set()
    for key in keys:
        if key in new_ids and key not in seen:
            out.append(Stored(new_ids[key], new=True))
        else:
            out.append(Stored(existing.get(key) or new_ids[key], new=False))
        seen.add(key)
    return out


def _summary(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """Message-ID, From and Subject for listings, read cheaply; the full parse comes later.

    The Message-ID is kept in the parser's form (no brackets), the form threading looks
    references up in: a follow-up to the person's own earlier mail must find it.
    """
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536])
        sender, subject = (headers.get(n) for n in ("From", "Subject"))
        return (
            message_id_of(headers),
            _clip(str(sender)) if sender is not None else None,
            _clip(str(subject)) if subject is not None else None,
        )
    except Exception:
        return None, None, None


def _clip(value: str, limit: int = 900) -> str:
    return value.replace("\x00", "").strip()[:limit]
