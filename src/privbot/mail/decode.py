"""Decode text: bytes in any declared (or mislabelled) charset, and raw header values.

Everything the stdlib `email` package is fragile about in text is redone here with fallbacks:
unknown or unsafe charset labels, utf-8 mislabelled as a legacy charset, windows-1252 mixed
into utf-8, ISO-2022-JP with Microsoft extensions, UTF-7, raw 8-bit header bytes and broken
RFC 2047 encoded words.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

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
PLAIN_CODECS = frozenset({"utf-8", "ascii", "cp1252", "latin-1", "iso8859-1"})
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
FOLD = re.compile(r"\r?\n(?=[ \t])")
_NON_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_SURROGATES = re.compile("[\udc80-\udcff]+")


def codec_name(charset: str | None) -> str | None:
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
    codec = codec_name(charset)
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


def fix_8bit(value: str, hints: tuple[str, ...] = ()) -> str:
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
    value = FOLD.sub("", fix_8bit(value, hints)).replace("\x00", "")
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


def clean_text(text: str) -> str:
    """Decoded text with `\n` line endings and no NUL characters."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
