"""Identity evidence: the attachments of a ticket's thread, which staff open (each opening
an audit event: these are passport copies) and mark checked, after which the retention run
removes them from the stored mail (`retention.py`), keeping who checked them and when.

The web app and the CLI call these; the bytes come from the stored raw message, read with
the same MIME walk that lists the attachments on the ticket page.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from privbot.app import App
from privbot.audit import record
from privbot.erasure import held_keys
from privbot.mail.parse import ParseError, attachment_data, parse_message
from privbot.mail.parsed import Attachment
from privbot.models import Event, Message, Ticket, iso, utcnow
from privbot.outbox.queue import address_key
from privbot.retention import EVIDENCE_CHECKED, EVIDENCE_REMOVED
from privbot.staff.actions import ReviewError, locked_ticket, touch
from privbot.tickets import ref

OPENED = "attachment_opened"
MAX_NAME = 120  # characters of a file name offered for saving
# Characters no file system or shell should meet in a name chosen by a stranger.
_UNSAFE = set('/\\:*?"<>|') | {"\x7f"}


class EvidenceError(ReviewError):
    """An attachment cannot be opened, or the evidence marked checked; says why."""


class NoSuchAttachment(EvidenceError):
    """No such message on the ticket, or no such attachment in it."""


class AttachmentRemoved(EvidenceError):
    """The attachment was removed after the evidence was checked: only a note is left."""


@dataclass(frozen=True)
class AttachmentFile:
    """One attachment as staff download it."""

    ticket_id: int
    message_id: int
    index: int
    filename: str  # sanitised, never empty: what the browser or the CLI may save it as
    content_type: str  # what the mail declared: shown, never used to serve it
    data: bytes


def safe_filename(name: str | None, message_id: int, index: int) -> str:
    """A name fit to offer for saving: no path, control, invisible or direction-changing
    characters (a right-to-left override makes "gpj.exe" look like "exe.jpg"), no leading
    dots (hidden files), bounded; a stand-in when nothing is left."""
    text = unicodedata.normalize("NFC", name or "")
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C":  # controls, format (bidi, zero-width), private, unassigned
            continue
        if char in _UNSAFE:
            kept.append("_")
        elif category[0] == "Z":  # every kind of space and line separator: a plain space
            kept.append(" ")
        else:
            kept.append(char)
    clean = " ".join("".join(kept).split()).strip(" .")
    if len(clean) > MAX_NAME:
        stem, dot, ext = clean.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            clean = stem[: MAX_NAME - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            clean = clean[:MAX_NAME].rstrip(" .")
    return clean or f"message-{message_id}-attachment-{index}"


def open_attachment(
    app: App, ticket_id: int, message_id: int, index: int, *, actor: str, via: str
) -> AttachmentFile:
    """The bytes of one attachment of a ticket's mail, recorded as opened by `actor` in the
    same transaction: no bytes leave without the event."""
    with app.sessions.begin() as session:
        message = session.scalar(
            select(Message).where(Message.id == message_id, Message.ticket_id == ticket_id)
        )
        if message is None:
            raise NoSuchAttachment(f"{ref(ticket_id)} has no message #{message_id}")
        try:
            found = attachment_data(message.raw, index)
        except ParseError:
            raise NoSuchAttachment(f"message #{message_id} cannot be read") from None
        except IndexError:
            raise NoSuchAttachment(f"message #{message_id} has no attachment {index}") from None
        if found.attachment.removed:
            raise AttachmentRemoved(
                f"attachment {index} of message #{message_id} was removed after the evidence "
                "was checked"
            )
        name = safe_filename(found.attachment.filename, message_id, index)
        content_type = found.attachment.content_type[:100]
        record(
            session, OPENED, ticket=ticket_id, message=message, actor=actor, index=index,
            filename=name, content_type=content_type, size=len(found.data), via=via,
        )  # fmt: skip
    return AttachmentFile(ticket_id, message_id, index, name, content_type, found.data)


def mark_checked(app: App, ticket_id: int, *, actor: str) -> int:
    """Record that `actor` checked the ticket's identity evidence (the attachments now in
    its thread); returns how many there are. The retention run removes them afterwards."""
    with app.sessions.begin() as session:
        ticket = locked_ticket(session, ticket_id)
        if ticket.erased_at is not None:
            raise EvidenceError(f"{ref(ticket_id)}'s requester was erased: nothing to check")
        listed = [
            (message.id, a)
            for message, attachments in _thread_attachments(session, ticket_id)
            for a in attachments
            if not a.removed
        ]
        if not listed:
            raise EvidenceError(f"{ref(ticket_id)} has no attachments to check")
        touch(ticket)
        record(
            session, EVIDENCE_CHECKED, ticket=ticket, actor=actor, attachments=len(listed),
            messages=sorted({m for m, _ in listed}),
        )  # fmt: skip
        return len(listed)


def _thread_attachments(
    session: Session, ticket_id: int
) -> list[tuple[Message, tuple[Attachment, ...]]]:
    out = []
    for message in session.scalars(
        select(Message).where(Message.ticket_id == ticket_id).order_by(Message.id)
    ):
        try:
            out.append((message, parse_message(message.raw).attachments))
        except ParseError:
            continue
    return out


def attachment_rows(message_id: int, attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    """A message's attachments as the ticket page and `tickets show` list them."""
    return [
        {
            "index": index,
            "message": message_id,
            "name": safe_filename(a.filename, message_id, index),
            "content_type": a.content_type,
            "size": a.size,
            "size_text": size_text(a.size),
            "removed": a.removed,
        }
        for index, a in enumerate(attachments)
    ]


def size_text(size: int) -> str:
    """A size as people read it: 512 bytes, 12.3 kB, 4.1 MB."""
    if size < 1000:
        return f"{size} byte{'' if size == 1 else 's'}"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def state(session: Session, ticket: Ticket, events: list[Event], days: int) -> dict[str, Any]:
    """Where the ticket's evidence stands: last checked (by whom, when), removed (when,
    how many) or when it will be, and whether a legal hold keeps it."""
    checks = [e for e in events if e.kind == EVIDENCE_CHECKED]
    removals = [e for e in events if e.kind == EVIDENCE_REMOVED]
    check, removal = (checks[-1] if checks else None), (removals[-1] if removals else None)
    pending = check is not None and (removal is None or removal.at < check.at)
    held = (
        pending and ticket.erased_at is None and address_key(ticket.requester) in held_keys(session)
    )
    due: datetime | None = check.at + timedelta(days=days) if pending and check else None
    return {
        "checked": {"by": check.actor, "at": iso(check.at)} if check else None,
        "removed": (
            {"at": iso(removal.at), "attachments": removal.detail.get("attachments", 0)}
            if removal
            else None
        ),
        "removal_due": iso(due),
        # Due already: the next run (at serve's start, then daily) takes them.
        "removal_next_run": due is not None and due <= utcnow(),
        "on_hold": held,
    }
