"""Turn raw RFC 5322 / MIME bytes into a ParsedMessage without ever crashing on damaged mail.

The stdlib `email` package does the MIME structure; everything it is fragile about (charsets,
encoded words, address headers) is redone here with fallbacks, because a support mailbox
receives whatever the internet sends.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from html.parser import HTMLParser

from privbot.mail.parsed import Attachment, ParsedMessage

MAX_TEXT_CHARS = 1_000_000  # decoded text kept per message
MAX_PARTS = 1_000  # MIME parts walked per message
MAX_DEPTH = 40  # MIME nesting followed; deeper is hostile, not mail
MAX_HTML_CHARS = 4_000_000  # HTML shrinks when converted; cap the input so conversion stays fast

_BODY_TYPES = ("text/plain", "text/html")
_MESSAGE_TYPES = ("message/rfc822", "message/global")

# Charset labels seen in the wild that Python does not know, or knows under a narrower name.
_CHARSET_ALIASES = {
    "iso-gb2312": "gb18030",
    "gb2312": "gb18030",  # gb18030 is a superset; real "gb2312" mail uses GBK characters
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "unicode-1-1-utf-7": "utf-7",
    "utf7": "utf-7",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "cp932",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-8859-1": "cp1252",  # as browsers do: mail labelled latin-1 is nearly always cp1252
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "utf-8",  # 8-bit bytes in "us-ascii" mail are most often utf-8
    "ascii": "utf-8",
}
# Codecs that are not charsets: a hostile label must not turn text into escape processing.
_PLAIN_CODECS = frozenset({"utf-8", "ascii", "cp1252", "latin-1", "iso8859-1"})
# Supersets tried when text does not decode in the declared charset.
_RELATED_CODECS = {
    "iso2022_jp_ext": ("iso2022_jp_2", "iso2022_jp_3"),
    "iso2022_jp": ("iso2022_jp_2", "iso2022_jp_3"),
    "euc_jp": ("cp932",),
    "big5": ("big5hkscs",),
}
_FORBIDDEN_CODECS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"}
)

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NON_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CORE_HEADERS = frozenset(
    {b"from", b"to", b"subject", b"date", b"received", b"message-id", b"return-path"}
)
_ADDR_SPEC = re.compile(r'[^\s<>()\[\],;:"@]+@[^\s<>()\[\],;:"@]+')
_LOCAL_ONLY = re.compile(r'[^\s<>()\[\],;:"@]+')  # "MAILER-DAEMON" without a domain
_SURROGATES = re.compile("[\udc80-\udcff]+")
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")


class ParseError(ValueError):
    """Nothing usable could be read from the input."""


@dataclass
class _Walk:
    """Per-call accumulator for the MIME walk (kept per call: the module holds no state)."""

    texts: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parts: int = 0
    chars: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add_text(self, text: str) -> None:
        text = _clean_text(text).strip("\n")
        if not text.strip():
            return
        room = MAX_TEXT_CHARS - self.chars
        if len(text) > room:
            text = text[: max(room, 0)]
            self.note(f"text truncated at {MAX_TEXT_CHARS:,} characters")
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


def _parse(data: bytes) -> ParsedMessage:
    # One newline convention before parsing: CR-only (old Mac) mail would otherwise be one line.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").lstrip(b"\n")
    walk = _Walk()
    data = _repair_header_block(data, walk)
    msg = BytesParser(policy=policy.default).parsebytes(data)
    hints = _charset_hints(msg)
    headers = _decoded_headers(msg, walk, hints)
    _walk_part(msg, walk, depth=0, collect_text=True)
    _note_email_defects(msg, walk)

    from_pairs = _addresses(msg, "from", hints)
    from_name, from_addr = from_pairs[0] if from_pairs else ("", None)
    if from_addr is None:
        walk.note("no From header" if "from" not in headers else "no usable address in From")
    reply_to = _addresses(msg, "reply-to", hints)
    text = "\n\n".join(walk.texts)
    new_text, quoted_text, signature = split_reply(text)
    return ParsedMessage(
        message_id=_message_id(_first(headers, "message-id")),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=reply_to[0][1] if reply_to else None,
        to=tuple(addr for _, addr in _addresses(msg, "to", hints)),
        cc=tuple(addr for _, addr in _addresses(msg, "cc", hints)),
        subject=_first(headers, "subject") or "",
        date=_first(headers, "date"),
        in_reply_to=_message_id(_first(headers, "in-reply-to")),
        references=_references(headers.get("references", ())),
        content_type=_content_type(msg),
        text=text,
        new_text=new_text,
        quoted_text=quoted_text,
        signature=signature,
        attachments=tuple(walk.attachments),
        headers=headers,
        defects=tuple(walk.notes),
    )


def _repair_header_block(data: bytes, walk: _Walk) -> bytes:
    """Mend a header block the stdlib would cut short at the first malformed line.

    Seen in the wild: folded lines without leading whitespace, and a stray first line such as
    "---- Original email message ----" before the headers. Only done when the block clearly
    is a header block, so a message that is all body text stays untouched.
    """
    head, sep, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    good = [bool(_HEADER_LINE.match(line)) for line in lines]
    first_ok = good[0] or lines[0].startswith(b"From ")
    rest_ok = all(
        ok or line[:1] in (b" ", b"\t") for line, ok in zip(lines[1:], good[1:], strict=True)
    )
    if first_ok and rest_ok:
        return data
    names = {
        line.split(b":", 1)[0].strip().lower() for line, ok in zip(lines, good, strict=True) if ok
    }
    if sum(good) < 3 or not names & _CORE_HEADERS:
        return data
    mended: list[bytes] = []
    for line, ok in zip(lines, good, strict=True):
        if ok or line[:1] in (b" ", b"\t"):
            mended.append(line)
        elif mended:
            mended.append(b" " + line)  # a continuation that lost its indentation
        elif not line.startswith(b"From "):
            walk.note("junk line before the headers dropped")
        else:
            mended.append(line)
    walk.note("malformed header block mended")
    return b"\n".join(mended) + sep + body


def _first(headers: dict[str, tuple[str, ...]], name: str) -> str | None:
    values = headers.get(name)
    return values[0].strip() if values else None


def _note_email_defects(msg: Message, walk: _Walk) -> None:
    """Summarise the stdlib's own damage reports (by kind, not per occurrence)."""
    kinds = sorted({type(d).__name__ for d in getattr(msg, "defects", [])})
    for kind in kinds[:5]:
        walk.note(f"MIME damage: {kind}")


# ---------------------------------------------------------------------------------------------
# charsets and headers


def _codec(charset: str | None) -> str | None:
    """Python codec name for a declared charset label, or None if unknown/unsafe."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    if name in _FORBIDDEN_CODECS:
        return None
    try:
        b"".decode(name)  # rejects bytes-to-bytes codecs such as base64 or zlib
    except LookupError:
        return None
    return name


def _legacy_decode(data: bytes) -> str:
    """Undeclared or unknown charset: utf-8 where valid, windows-1252 (latin-1) byte by byte
    elsewhere, so text mixing both (pasted quotes, broken clients) stays readable."""
    text = data.decode("utf-8", errors="surrogateescape")
    if not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub(
        lambda m: m.group().encode("utf-8", "surrogateescape").decode("cp1252", "replace"), text
    )


def _iso2022jp_as_cp932(data: bytes) -> str:
    """ISO-2022-JP with Microsoft extensions (CP50220: ①, ㈱...), which Python lacks.

    JIS X 0208 byte pairs are mapped arithmetically to Shift_JIS and decoded as cp932.
    """
    out = bytearray()
    double = kana = False
    i = 0
    while i < len(data):
        if data[i] == 0x1B and i + 2 < len(data):
            seq = data[i + 1 : i + 3]
            double, kana = seq in (b"$B", b"$@"), seq == b"(I"
            i += 3
            continue
        byte = data[i]
        if double and 0x21 <= byte <= 0x7E and i + 1 < len(data):
            j1, j2 = byte, data[i + 1]
            out.append(((j1 + 1) >> 1) + (0x70 if j1 <= 0x5E else 0xB0))
            out.append(j2 + (0x1F if j1 % 2 else 0x7E) + (1 if j1 % 2 and j2 >= 0x60 else 0))
            i += 2
            continue
        out.append(byte + 0x80 if kana and 0x21 <= byte <= 0x5F else byte)
        i += 1
    return bytes(out).decode("cp932", errors="replace")


def decode_bytes(data: bytes, charset: str | None, notes: list[str] | None = None) -> str:
    """Decode text bytes robustly; a note on any repair is appended to `notes`."""
    notes = notes if notes is not None else []
    if not data:
        return ""
    codec = _codec(charset)
    if codec is None:
        text = _legacy_decode(data)
        if charset:
            used = "utf-8" if _is_utf8(data) else "utf-8/windows-1252"
            notes.append(f"unknown charset {charset.strip()[:40]!r} decoded as {used}")
        elif not data.isascii():
            notes.append("8-bit text without charset decoded as utf-8/windows-1252")
        return text
    if codec != "utf-8" and not data.isascii() and _is_utf8(data):
        # Legacy 8-bit text is almost never valid utf-8 by accident; mislabelling is common.
        notes.append(f"text labelled {charset!r} was utf-8")
        return data.decode("utf-8")
    for candidate in (codec, *_RELATED_CODECS.get(codec, ())):
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    if codec.startswith("iso2022_jp"):
        notes.append(f"text labelled {charset!r} decoded with Microsoft extensions")
        return _iso2022jp_as_cp932(data)
    if codec == "utf-8":
        # Mislabelled legacy text is far commoner than damaged utf-8.
        notes.append(f"invalid utf-8 in text labelled {charset!r}: those bytes read as cp1252")
        return _legacy_decode(data)
    notes.append(f"invalid bytes for charset {charset!r} replaced")
    return data.decode(codec, errors="replace")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _charset_hints(msg: Message) -> tuple[str, ...]:
    """Legacy charsets the message declares: the likely charset of raw 8-bit headers."""
    hints: list[str] = []
    for index, part in enumerate(msg.walk()):
        if index >= MAX_PARTS:
            break
        try:
            codec = _codec(part.get_content_charset())
        except Exception:
            codec = None
        if codec and codec not in _PLAIN_CODECS and codec not in hints:
            hints.append(codec)
    return tuple(hints)


def _fix_8bit(value: str, hints: tuple[str, ...] = ()) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes; raw ISO-2022 ones as ESC sequences.

    Try utf-8, then the legacy charsets the message declares, then windows-1252.
    """
    escaped = "\x1b" in value
    if not escaped and not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    if any(h.startswith("iso2022_jp") for h in hints):
        hints = (*hints, "cp932", "euc_jp")  # Japanese mail often has Shift_JIS raw headers
    candidates = ("utf-8", *hints, "iso2022_jp_ext") if escaped else ("utf-8", *hints)
    for codec in candidates:
        try:
            decoded = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if "\x1b" not in decoded:
            return decoded
    return data.decode("cp1252", errors="replace")


def _word_bytes(encoding: str, payload: str) -> bytes:
    """Bytes of one RFC 2047 encoded word, tolerating broken padding and stray characters."""
    if encoding in "bB":
        cleaned = _NON_BASE64.sub("", payload)
        if len(cleaned) % 4 == 1:
            cleaned = cleaned[:-1]  # a lone trailing sextet carries no full byte
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return payload.encode("utf-8", "replace")
    return binascii.a2b_qp(payload.encode("utf-8", "replace"), header=True)


def decode_header_value(
    value: str, notes: list[str] | None = None, hints: tuple[str, ...] = ()
) -> str:
    """Unfold a raw header value and decode RFC 2047 encoded words (also broken ones)."""
    value = _FOLD.sub("", _fix_8bit(value, hints)).replace("\x00", "")
    if "=?" not in value:
        return value.strip()
    out: list[str] = []
    pending_charset: str | None = None
    pending = bytearray()

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset, notes))
        pending_charset = None
        pending.clear()

    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        # Whitespace between two encoded words is not part of the text (RFC 2047 6.2).
        if between and not (between.isspace() and pending_charset is not None):
            flush()
            out.append(between)
        charset = match.group(1).split("*")[0].lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        # Words in one charset are joined before decoding: utf-8 characters get split across them.
        pending_charset = charset
        pending.extend(_word_bytes(match.group(2), match.group(3)))
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out).strip()


def _raw_values(msg: Message, name: str, hints: tuple[str, ...] = ()) -> list[str]:
    try:
        return [_fix_8bit(str(v), hints) for k, v in msg.raw_items() if k.lower() == name]
    except Exception:
        return []


def _decoded_headers(
    msg: Message, walk: _Walk, hints: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    collected: dict[str, list[str]] = {}
    notes: list[str] = []
    for name, raw in msg.raw_items():
        key = str(name).strip().lower()
        collected.setdefault(key, []).append(decode_header_value(str(raw), notes, hints))
    for note in notes:
        walk.note(f"header: {note}")
    return {key: tuple(values) for key, values in collected.items()}


def _addresses(msg: Message, name: str, hints: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of every `name` header."""
    pairs: list[tuple[str, str]] = []
    for raw in _raw_values(msg, name, hints):
        pairs.extend(_parse_address_header(name, raw))
    return pairs


def _parse_address_header(name: str, raw: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    try:
        header = policy.default.header_fetch_parse(name, raw)
        found = [(a.display_name or "", a.addr_spec or "") for a in header.addresses]
    except Exception:  # policy.default raises on some broken address headers
        found = []
    if not found or not all(_ADDR_SPEC.fullmatch(addr) for _, addr in found):
        # The lenient old parser copes with much that the new one rejects.
        unfolded = _FOLD.sub("", raw)
        fallback = [(decode_header_value(n), a) for n, a in getaddresses([unfolded])]
        if _plausible_count(fallback) > _plausible_count(found):
            found = fallback
    result = []
    for display, addr in found:
        cleaned = _clean_address(addr)
        if cleaned:
            result.append((_fix_8bit(display).strip().strip('"').strip(), cleaned))
    if not result and (match := _ADDR_SPEC.search(raw)):
        result.append(("", match.group().lower()))  # last resort: any address in the value
    return result


def _plausible_count(pairs: list[tuple[str, str]]) -> int:
    return sum(1 for _, addr in pairs if _ADDR_SPEC.fullmatch(addr))


def _clean_address(addr: str) -> str | None:
    """A lower-cased address; junk around an address is cut away, pure junk dropped."""
    addr = addr.strip()
    if not _ADDR_SPEC.fullmatch(addr):
        match = _ADDR_SPEC.search(addr)
        if match:
            addr = match.group()
        elif not _LOCAL_ONLY.fullmatch(addr):
            return None  # e.g. "<>": no address at all
    return addr.lower()


def _message_id(value: str | None) -> str | None:
    if not value:
        return None
    match = _ANGLE_ID.search(value)
    ident = _WHITESPACE.sub("", match.group(1) if match else value)
    return ident or None


def _references(values: tuple[str, ...]) -> tuple[str, ...]:
    ids: list[str] = []
    for value in values:
        found = _ANGLE_ID.findall(value) or value.split()
        ids.extend(_WHITESPACE.sub("", i) for i in found)
    return tuple(i for i in ids if i)


# ---------------------------------------------------------------------------------------------
# MIME walk


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


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
    return decode_header_value(name) if "=?" in name else _fix_8bit(name)


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
            walk.note(f"HTML truncated at {MAX_HTML_CHARS:,} characters before conversion")
        text = html_to_text(text)
    return text


def _walk_part(part: Message, walk: _Walk, depth: int, collect_text: bool) -> None:
    if walk.parts >= MAX_PARTS:
        walk.note(f"more than {MAX_PARTS:,} MIME parts: the rest was ignored")
        return
    if depth > MAX_DEPTH:
        walk.note(f"MIME nesting deeper than {MAX_DEPTH}: the rest was ignored")
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
    chosen: object = None
    if ctype == "multipart/alternative":
        chosen = _choose_alternative(children)
    for index, child in enumerate(children):
        if not isinstance(child, Message):
            continue
        keep = collect_text
        if ctype == "multipart/alternative":
            keep = collect_text and child is chosen
        elif ctype == "multipart/report":
            # Only the first part is written for humans; the rest is the status and the
            # returned message, which are not the sender's words.
            keep = collect_text and index == 0
        _walk_part(child, walk, depth + 1, keep)


def _choose_alternative(children: list[Message]) -> Message | None:
    """Plain text first, then a nested multipart (it may hold plain text), then HTML."""
    best: Message | None = None
    best_score = -1
    for child in children:
        if not isinstance(child, Message):
            continue
        ctype = _content_type(child)
        if ctype == "text/plain" and _is_body_text(child, ctype):
            score = 3 if _payload_bytes(child).strip() else 0
        elif ctype.startswith("multipart/"):
            score = 2
        elif ctype == "text/html" and _is_body_text(child, ctype):
            score = 1
        else:
            score = 0
        if score >= best_score:
            best, best_score = child, score
            if score == 3:
                break
    return best


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
        values = _raw_values(inner, name.lower())
        if values:
            lines.append(f"{name}: {decode_header_value(values[0])}")
    return "\n".join(lines)


def _add_attachment(part: Message, ctype: str, walk: _Walk) -> None:
    walk.attachments.append(Attachment(_filename(part), ctype, _payload_size(part)))


def _payload_size(part: Message) -> int:
    payload = part.get_payload()
    if isinstance(payload, list):
        try:
            return sum(len(p.as_bytes()) for p in payload if isinstance(p, Message))
        except Exception:
            return 0
    return len(_payload_bytes(part))


def _clean_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


# ---------------------------------------------------------------------------------------------
# HTML to text

_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "pre", "hr"}
)
_LINE_TAGS = frozenset(
    {
        "div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address",
        "center", "form", "fieldset", "figure", "figcaption", "main", "nav", "aside", "caption",
        "tbody", "thead", "tfoot", "body", "html",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})


class _HtmlToText(HTMLParser):
    """Readable text from HTML: blocks become lines, blockquotes become "> " lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip: list[str] = []
        self._pre = 0
        self._quote = 0

    def _end_line(self) -> None:
        line = "".join(self._current).rstrip()
        self._current = []
        self.lines.append(("> " * self._quote) + line if line else ("> " * self._quote).rstrip())

    def _block(self, blank: bool) -> None:
        if self._current and "".join(self._current).strip():
            self._end_line()
        else:
            self._current = []
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = []  # a <head> that was never closed ends here
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
        elif tag == "br":
            self._end_line()
        elif tag == "blockquote":
            self._block(blank=True)
            self._quote += 1
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            self._pre += tag == "pre"
            if tag == "li":
                self._current.append("- ")
        elif tag in _CELL_TAGS and self._current:
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
        elif tag == "blockquote":
            self._block(blank=True)
            self._quote = max(0, self._quote - 1)
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._current.append(first)
            for line in rest:
                self._end_line()
                self._current.append(line)
            return
        text = _WHITESPACE.sub(" ", data)
        if not "".join(self._current).strip():
            text = text.lstrip()
        self._current.append(text)

    def text(self) -> str:
        self._block(blank=False)
        return "\n".join(self.lines)


_TAG = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """Convert HTML mail to readable plain text with `\\n` line endings."""
    parser = _HtmlToText()
    try:
        parser.feed(_clean_text(html))
        parser.close()
        text = parser.text()
    except Exception:  # HTMLParser can trip on pathological markup; strip tags instead
        import html as html_module

        text = html_module.unescape(_TAG.sub(" ", html))
    text = text.replace("\xa0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


# ---------------------------------------------------------------------------------------------
# new text / quoted text / signature

_ATTRIBUTION = re.compile(
    r"""^(?:
        on\b.{0,300}\bwrote\s*:?
      | am\b.{0,300}\bschrieb\b.{0,200}:
      | le\b.{0,300}\ba\s+[ée]crit\s*:
      | el\b.{0,300}\bescribi[óo]\s*:
      | il\b.{0,300}\bha\s+scritto\s*:
      | op\b.{0,300}\bschreef\b.{0,200}:
      | em\b.{0,300}\bescreveu\s*:
      | .{0,300}(?:@|\d).{0,300}\b(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]|ha\s+scritto
                               |schreef|escreveu)\s*:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_ATTRIBUTION_START = re.compile(r"^(?:on|am|le|el|il|op|em)\b", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"""^[\s*]*(?:
        -{2,}\s*(?:original\s+message|original-nachricht|urspr[üu]ngliche\s+nachricht
                |message\s+d'origine|mensaje\s+original|messaggio\s+originale
                |oorspronkelijk\s+bericht|mensagem\s+original|original\s+e-?mail\s+message
                |forwarded\s+message|weitergeleitete\s+nachricht|message\s+transf[ée]r[ée]
                |mensaje\s+reenviado|messaggio\s+inoltrato|doorgestuurd\s+bericht
                |mensagem\s+encaminhada)\s*-{2,}
      | begin\s+forwarded\s+message\s*:
      | anfang\s+der\s+weitergeleiteten\s+nachricht\s*:
      | d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]\s*:
    )[\s*]*$""",
    re.IGNORECASE | re.VERBOSE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_HEADER_FROM = re.compile(r"^[\s*]*(?:from|de|von|van|da|fra|från|od)\s*:[\s*]*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^[\s*]*(?:sent|envoy[ée]|gesendet|enviado|inviato|verzonden|date|datum|fecha|data"
    r"|to|an|à|a|para|aan|cc|subject|betreff|objet|asunto|oggetto|onderwerp|assunto)\s*:",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(
    r"""^\s*(?:--\s*
      | sent\s+from\s+my\b.*
      | sent\s+from\s+(?:outlook|mail\s+for\s+windows|yahoo\s+mail)\b.*
      | get\s+outlook\s+for\s+\w+.*
      | von\s+meinem\s+.{0,40}\s+gesendet.*
      | gesendet\s+von\s+meinem\b.*
      | envoy[ée]\s+de\s+mon\b.*
      | enviado\s+desde\s+mi\b.*
      | enviado\s+do\s+meu\b.*
      | inviato\s+da(?:l)?\s+(?:mio\s+)?\w+.*
      | verstuurd\s+vanaf\s+mijn\b.*
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_span(lines: list[str], index: int) -> int:
    """Number of lines (1-3) forming an attribution starting at `index`, or 0."""
    first = lines[index].strip()
    if not first or _is_quote(first):
        return 0
    if _ATTRIBUTION.match(first):
        return 1
    if not _ATTRIBUTION_START.match(first):
        return 0
    joined = first
    for extra in (1, 2):  # clients wrap long attributions over two or three lines
        if index + extra >= len(lines) or not lines[index + extra].strip():
            return 0
        joined += " " + lines[index + extra].strip()
        if _ATTRIBUTION.match(joined):
            return extra + 1
    return 0


def _is_header_block(lines: list[str], index: int) -> bool:
    """An Outlook-style "From: / Sent:" block (optionally after a line of underscores)."""
    start = index
    if _UNDERSCORES.match(lines[index]):
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start < len(lines) and _HEADER_FROM.match(lines[start]):
            return True
    if start >= len(lines) or not _HEADER_FROM.match(lines[start]):
        return False
    following = [line for line in lines[start + 1 : start + 4] if line.strip()]
    return any(_HEADER_NEXT.match(line) for line in following[:2])


def _find_quote_start(lines: list[str]) -> tuple[int, int, bool] | None:
    """(index, span, is_attribution) of the first line that introduces quoted mail."""
    for index, line in enumerate(lines):
        if _is_quote(line):
            continue
        span = _attribution_span(lines, index)
        if span:
            return index, span, True
        if _SEPARATOR.match(line) or _is_header_block(lines, index):
            return index, 1, False
    return None


def _split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line):
            return lines[:index], lines[index:]
    return lines, []


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def split_reply(text: str) -> tuple[str, str, str]:
    """Split text into (new text, quoted text, signature).

    Top-posting puts everything from the first attribution/header block on in the quote;
    ">"-quoting keeps every unquoted line as new text, so interleaved answers survive.
    """
    lines = text.split("\n")
    found = _find_quote_start(lines)
    # An Outlook/forward header, or an attribution not followed by ">" lines, means top-posting:
    # everything from there on is the quote.
    if found is not None and (
        not found[2] or not any(_is_quote(x) for x in lines[found[0] + found[1] :])
    ):
        own, quoted = lines[: found[0]], lines[found[0] :]
    else:
        skip = set(range(found[0], found[0] + found[1])) if found else set()
        own = [x for i, x in enumerate(lines) if i not in skip and not _is_quote(x)]
        quoted = [x for i, x in enumerate(lines) if i in skip or _is_quote(x)]
    own, signature = _split_signature(own)
    new_text = _join(own)
    if not new_text.strip():
        # Never lose the person's words: if everything looks quoted, all of it is new.
        return text.strip("\n"), "", ""
    return new_text, _join(quoted), _join(signature)
