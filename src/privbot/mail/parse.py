"""Turn raw RFC 5322 / MIME bytes into a ParsedMessage without ever crashing on damaged mail.

This module walks the MIME tree: it chooses the text the sender wrote (the richest readable
alternative, only the root of a related group and the human part of a report, inline forwarded
messages), lists attachments and enforces the limits. The stdlib `email` package does the MIME
structure; the fragile parts are redone with fallbacks in their own modules: text and header
decoding (`decode`), top-level headers and addresses (`headers`), HTML conversion (`html_text`)
and reply splitting (`quotes`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser

from privbot.mail.compose import is_forward, is_reply
from privbot.mail.decode import (
    PLAIN_CODECS,
    clean_text,
    codec_name,
    decode_bytes,
    decode_header_value,
    fix_8bit,
)
from privbot.mail.headers import (
    addresses,
    decoded_headers,
    first_value,
    from_field,
    parse_message_id,
    parse_references,
    raw_values,
    repair_header_block,
)
from privbot.mail.html_text import html_to_text
from privbot.mail.parsed import Attachment, ParsedMessage
from privbot.mail.quotes import split_reply, starts_forward

MAX_TEXT_CHARS = 1_000_000  # decoded text kept per message
MAX_PARTS = 1_000  # MIME parts walked per message
MAX_DEPTH = 40  # MIME nesting followed; deeper is hostile, not mail
MAX_HTML_CHARS = 4_000_000  # HTML shrinks when converted; cap the input so conversion stays fast

_BODY_TYPES = ("text/plain", "text/html")
_MESSAGE_TYPES = ("message/rfc822", "message/global")
# Marks a part privbot put in place of an attachment it removed (`remove_attachments`).
REMOVED_HEADER = "X-Privbot-Removed"


class ParseError(ValueError):
    """Nothing usable could be read from the input."""


@dataclass
class _Walk:
    """Per-call accumulator for the MIME walk (kept per call: the module holds no state)."""

    texts: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # The MIME part of each attachment, same order: what extraction and removal work on.
    found: list[Message] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parts: int = 0
    chars: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add_text(self, text: str) -> None:
        text = clean_text(text).strip("\n")
        if not text.strip():
            return
        room = MAX_TEXT_CHARS - self.chars
        if len(text) > room:
            text = text[: max(room, 0)]
            self.note(f"limit: text truncated at {MAX_TEXT_CHARS:,} characters")
        if text:
            self.texts.append(text)
            self.chars += len(text)


# ---------------------------------------------------------------------------------------------
# public entry point


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one raw message. Raises ParseError (only) when nothing usable is there."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ParseError(f"expected bytes, got {type(raw).__name__}")
    data = bytes(raw)
    if not data.strip():
        raise ParseError("empty message")
    try:
        return _parse(data)
    except ParseError:
        raise
    except Exception as exc:  # last line of defence: hostile input must not crash the pipeline
        raise ParseError(f"could not parse message: {type(exc).__name__}: {exc}") from exc


def _tree(data: bytes, walk: _Walk) -> Message:
    """The MIME tree of raw bytes, as every reader here sees it."""
    # One newline convention before parsing: CR-only (old Mac) mail would otherwise be one line.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").lstrip(b"\n")
    data = repair_header_block(data, walk.note)
    # compat32: the MIME structure is the same, and headers are decoded our own way (in
    # `headers`) anyway; the new header registry cost a fifth of handling a message.
    return BytesParser(policy=policy.compat32).parsebytes(data)


def _parse(data: bytes) -> ParsedMessage:
    walk = _Walk()
    msg = _tree(data, walk)
    hints = _charset_hints(msg)
    headers = decoded_headers(msg, walk.note, hints)
    _walk_part(msg, walk, depth=0, collect_text=True)
    _note_email_defects(msg, walk)

    sender = from_field(msg, hints)
    if sender.problem is not None:
        walk.note(sender.problem)
    reply_to = addresses(msg, "reply-to", hints)
    text = "\n\n".join(walk.texts)
    new_text, quoted_text, signature = split_reply(text)
    subject = first_value(headers, "subject") or ""
    forward = is_forward(subject) or (not is_reply(subject) and starts_forward(quoted_text))
    return ParsedMessage(
        message_id=parse_message_id(first_value(headers, "message-id")),
        from_addr=sender.address,
        from_name=sender.name,
        from_all=tuple(addr for _, addr in sender.mailboxes),
        reply_to=reply_to[0][1] if reply_to else None,
        to=tuple(addr for _, addr in addresses(msg, "to", hints)),
        cc=tuple(addr for _, addr in addresses(msg, "cc", hints)),
        subject=subject,
        date=first_value(headers, "date"),
        in_reply_to=parse_message_id(first_value(headers, "in-reply-to")),
        references=parse_references(headers.get("references", ())),
        content_type=_content_type(msg),
        text=text,
        new_text=new_text,
        quoted_text=quoted_text,
        signature=signature,
        attachments=tuple(walk.attachments),
        headers=headers,
        defects=tuple(walk.notes),
        forwarded_text=quoted_text if forward else "",
    )


def _note_email_defects(msg: Message, walk: _Walk) -> None:
    """Summarise the stdlib's own damage reports (by kind, not per occurrence)."""
    kinds = sorted({type(d).__name__ for d in getattr(msg, "defects", [])})
    for kind in kinds[:5]:
        walk.note(f"MIME damage: {kind}")


def _charset_hints(msg: Message) -> tuple[str, ...]:
    """Legacy charsets the message declares: the likely charset of raw 8-bit headers."""
    hints: list[str] = []
    for index, part in enumerate(msg.walk()):
        if index >= MAX_PARTS:
            break
        try:
            codec = codec_name(part.get_content_charset())
        except Exception:
            codec = None
        if codec and codec not in PLAIN_CODECS and codec not in hints:
            hints.append(codec)
    return tuple(hints)


# ---------------------------------------------------------------------------------------------
# MIME walk


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type().lower()
    except Exception:
        return "text/plain"
    # A missing ";" leaves the parameters in the value ("text/plain charset=..."): cut them.
    return ctype.split(None, 1)[0] if ctype.strip() else "text/plain"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        return None
    name = str(name)
    if "\ufffd" in name:
        # compat32 hands raw 8-bit parameters over already spoilt; read the raw header again.
        name = (
            _raw_param(part, "content-disposition", "filename")
            or _raw_param(part, "content-type", "name")
            or name
        )
    name = decode_header_value(name) if "=?" in name else fix_8bit(name)
    return name or None


def _raw_param(part: Message, header: str, param: str) -> str | None:
    values = raw_values(part, header)
    if not values:
        return None
    try:
        value = policy.default.header_fetch_parse(header, values[0]).params.get(param)
    except Exception:
        return None
    return str(value) if value else None


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _is_body_text(part: Message, ctype: str) -> bool:
    """Text the sender wrote, as opposed to an attached text file."""
    return ctype in _BODY_TYPES and _disposition(part) != "attachment" and _filename(part) is None


def _part_text(part: Message, ctype: str, walk: _Walk) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    notes: list[str] = []
    text = decode_bytes(_payload_bytes(part), charset, notes)
    for note in notes:
        walk.note(note)
    if ctype == "text/html":
        if len(text) > MAX_HTML_CHARS:
            text = text[:MAX_HTML_CHARS]
            walk.note(f"limit: HTML truncated at {MAX_HTML_CHARS:,} characters before conversion")
        text = html_to_text(text)
    return text


def _walk_part(part: Message, walk: _Walk, depth: int, collect_text: bool) -> None:
    if walk.parts >= MAX_PARTS:
        walk.note(f"limit: more than {MAX_PARTS:,} MIME parts: the rest was ignored")
        return
    if depth > MAX_DEPTH:
        walk.note(f"limit: MIME nesting deeper than {MAX_DEPTH}: the rest was ignored")
        return
    walk.parts += 1
    ctype = _content_type(part)
    if ctype in _MESSAGE_TYPES:
        _walk_message(part, ctype, walk, depth, collect_text)
    elif ctype.startswith("multipart/"):
        _walk_multipart(part, ctype, walk, depth, collect_text)
    elif _is_body_text(part, ctype):
        if collect_text:
            walk.add_text(_part_text(part, ctype, walk))
    else:
        _add_attachment(part, ctype, walk)


def _walk_multipart(part: Message, ctype: str, walk: _Walk, depth: int, collect_text: bool) -> None:
    children = part.get_payload()
    if not isinstance(children, list):
        # A multipart without a usable boundary: its body is all there is, so read it as text.
        walk.note("multipart without parts read as plain text")
        if collect_text:
            walk.add_text(_part_text(part, "text/plain", walk))
        return
    if ctype == "multipart/alternative":
        _walk_alternative(children, walk, depth, collect_text)
        return
    # Of a report only the first part is written for humans; the rest is the status and the
    # returned message, which are not the sender's words. Of a related group only the root is
    # shown; the other parts are resources it refers to (images, frames), not body text.
    root = _related_root(part, children) if ctype == "multipart/related" else None
    for index, child in enumerate(children):
        if not isinstance(child, Message):
            continue
        keep = collect_text
        if ctype == "multipart/report":
            keep = collect_text and index == 0
        elif ctype == "multipart/related":
            keep = collect_text and child is root
        _walk_part(child, walk, depth + 1, keep)


def _related_root(part: Message, children: list[Message]) -> Message | None:
    """The root of a multipart/related (RFC 2387): the part named by `start`, else the first."""
    parts = [c for c in children if isinstance(c, Message)]
    try:
        start = str(part.get_param("start") or "").strip().strip("<>")
    except Exception:
        start = ""
    if start:
        for child in parts:
            if str(child.get("content-id") or "").strip().strip("<>") == start:
                return child
    return parts[0] if parts else None


def _walk_alternative(children: list[Message], walk: _Walk, depth: int, collect_text: bool) -> None:
    """Keep the text of the last alternative that has readable text; list every attachment.

    RFC 2046 orders alternatives from plainest to richest and asks for the last one the reader
    can show, which is what mail clients (and Zammad) display: almost always the HTML. The
    text/plain beside it is often a lossy rendering of it (hard-wrapped lines, flattened tables)
    or a placeholder ("view this mail in HTML"). An alternative that yields no text (an empty or
    image-only HTML part) is passed over for the one before it.
    """
    parts = [(i, c) for i, c in enumerate(children) if isinstance(c, Message)]
    walks: dict[int, _Walk] = {}
    chosen: int | None = None
    # Richest first, so the plainer alternatives are only decoded when the richer one is empty.
    for index, child in reversed(parts):
        sub = _Walk(parts=walk.parts, chars=walk.chars)
        _walk_part(child, sub, depth + 1, collect_text and chosen is None)
        walk.parts = sub.parts
        walks[index] = sub
        if chosen is None and sub.texts:
            chosen = index
    for index, _child in parts:  # attachments and notes in document order
        sub = walks[index]
        walk.attachments.extend(sub.attachments)
        walk.found.extend(sub.found)
        for text in sub.notes:
            walk.note(text)
        if index == chosen:
            walk.texts.extend(sub.texts)
            walk.chars = sub.chars


def _walk_message(part: Message, ctype: str, walk: _Walk, depth: int, collect_text: bool) -> None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if _disposition(part) == "attachment" or not isinstance(inner, Message) or not collect_text:
        _add_attachment(part, ctype, walk)
        return
    # An inline forwarded message: its words are part of what the sender passed on.
    walk.add_text(_forward_header(inner))
    _walk_part(inner, walk, depth + 1, collect_text)


def _forward_header(inner: Message) -> str:
    lines = ["---------- Forwarded message ----------"]
    for name in ("From", "Date", "Subject", "To"):
        values = raw_values(inner, name.lower())
        if values:
            lines.append(f"{name}: {decode_header_value(values[0])}")
    return "\n".join(lines)


def _add_attachment(part: Message, ctype: str, walk: _Walk) -> None:
    size = _payload_size(part)
    # Anyone can write the header: only a note-sized text part counts as one privbot left.
    removed = ctype == "text/plain" and size <= 512 and part.get(REMOVED_HEADER) is not None
    walk.attachments.append(Attachment(_filename(part), ctype, size, removed))
    walk.found.append(part)


def _payload_size(part: Message) -> int:
    payload = part.get_payload()
    if isinstance(payload, list):
        try:
            return sum(len(p.as_bytes()) for p in payload if isinstance(p, Message))
        except Exception:
            return 0
    return len(_payload_bytes(part))


# ---------------------------------------------------------------------------------------------
# attachments: their bytes, and taking them out


@dataclass(frozen=True)
class AttachmentData:
    """One attachment of a message as parsing lists it (`ParsedMessage.attachments[index]`),
    with its decoded bytes."""

    index: int
    attachment: Attachment
    data: bytes


def attachment_data(raw: bytes, index: int) -> AttachmentData:
    """The bytes of attachment `index` (0-based, the order `parse_message` lists them in).

    ParseError when the message cannot be read; IndexError when it has no such attachment.
    The same walk as `parse_message`, so an index shown on a page names the same part here.
    """
    _msg, walk = _walked(raw)
    if not 0 <= index < len(walk.found):
        raise IndexError(f"the message has {len(walk.found)} attachment(s), no number {index}")
    return AttachmentData(index, walk.attachments[index], _part_bytes(walk.found[index]))


def remove_attachments(raw: bytes, note: str) -> tuple[bytes, int]:
    """The message with every attachment replaced by a small text/plain part saying `note`
    (its file name kept, marked with REMOVED_HEADER), and how many were removed.

    The rest of the message (headers, the text the sender wrote) stays as it was; a part
    already removed is not counted again. ParseError when the message cannot be read.
    """
    msg, walk = _walked(raw)
    removed = 0
    for part, listed in zip(walk.found, walk.attachments, strict=True):
        if listed.removed:
            continue
        _replace_part(part, listed.filename, note)
        removed += 1
    if not removed:
        return bytes(raw), 0
    out = io.BytesIO()
    # No re-folding of headers and no ">From " escaping: only the removed parts change.
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return out.getvalue(), removed


def _walked(raw: bytes) -> tuple[Message, _Walk]:
    if not isinstance(raw, bytes | bytearray | memoryview) or not bytes(raw).strip():
        raise ParseError("empty message")
    walk = _Walk()
    try:
        msg = _tree(bytes(raw), walk)
        _walk_part(msg, walk, depth=0, collect_text=True)
    except Exception as exc:  # hostile input: a reason, never a crash
        raise ParseError(f"could not parse message: {type(exc).__name__}: {exc}") from exc
    return msg, walk


def _part_bytes(part: Message) -> bytes:
    """What a person saving the attachment gets: the decoded content; an attached message
    as the message itself (an .eml)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        try:
            return b"".join(p.as_bytes() for p in payload if isinstance(p, Message))
        except Exception:
            return b""
    return _payload_bytes(part)


def _replace_part(part: Message, filename: str | None, note: str) -> None:
    # Only the part's content headers go: a whole message that is one attachment (a bare
    # application/pdf) keeps its From, Subject and Date.
    for name in {k.lower() for k in part}:
        if name.startswith("content-") or name == REMOVED_HEADER.lower():
            del part[name]
    part["Content-Type"] = 'text/plain; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "8bit"
    # compat32 keeps 8-bit bodies as surrogate-escaped text; the generator writes the bytes.
    part.set_payload((note + "\n").encode("utf-8").decode("ascii", "surrogateescape"))
    if filename:
        # Control characters and line breaks of a hostile name must not break the header.
        name = "".join(c if c.isprintable() else "_" for c in filename)[:200]
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", name))
    else:
        part.add_header("Content-Disposition", "attachment")
    part[REMOVED_HEADER] = "yes"
