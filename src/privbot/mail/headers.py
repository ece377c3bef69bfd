"""Top-level headers: mend a broken header block, decode every header, read addresses and ids."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.utils import getaddresses

from privbot.mail.decode import FOLD, decode_header_value, fix_8bit

_ANGLE_ID = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_CORE_HEADERS = frozenset(
    {b"from", b"to", b"subject", b"date", b"received", b"message-id", b"return-path"}
)
_ADDR_SPEC = re.compile(r'[^\s<>()\[\],;:"@]+@[^\s<>()\[\],;:"@]+')
_QUOTED_PAIR = re.compile(r"\\(.)")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_LOCAL_ONLY = re.compile(r'[^\s<>()\[\],;:"@]+')  # "MAILER-DAEMON" without a domain


def repair_header_block(data: bytes, note: Callable[[str], None]) -> bytes:
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
            note("junk line before the headers dropped")
        else:
            mended.append(line)
    note("malformed header block mended")
    return b"\n".join(mended) + sep + body


def first_value(headers: dict[str, tuple[str, ...]], name: str) -> str | None:
    values = headers.get(name)
    return values[0].strip() if values else None


def raw_values(msg: Message, name: str, hints: tuple[str, ...] = ()) -> list[str]:
    try:
        return [fix_8bit(str(v), hints) for k, v in msg.raw_items() if k.lower() == name]
    except Exception:
        return []


def decoded_headers(
    msg: Message, note: Callable[[str], None], hints: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    collected: dict[str, list[str]] = {}
    notes: list[str] = []
    for name, raw in msg.raw_items():
        key = str(name).strip().lower()
        collected.setdefault(key, []).append(decode_header_value(str(raw), notes, hints))
    for text in notes:
        note(f"header: {text}")
    return {key: tuple(values) for key, values in collected.items()}


def addresses(msg: Message, name: str, hints: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of every `name` header."""
    pairs: list[tuple[str, str]] = []
    for raw in raw_values(msg, name, hints):
        pairs.extend(_parse_address_header(name, raw))
    return pairs


_SIMPLE_ADDRESS = re.compile(
    r"[ \t\r\n]*(?:([\w .'-]*?)[ \t\r\n]*<([^<>\s]+)>|([^<>\s]+))[ \t\r\n]*"
)


def _parse_address_header(name: str, raw: str) -> list[tuple[str, str]]:
    simple = _SIMPLE_ADDRESS.fullmatch(raw) if raw.isascii() else None
    if simple and _ADDR_SPEC.fullmatch(addr := (simple.group(2) or simple.group(3))):
        # Most mail: one plain "Name <addr>" or a bare address; the full parser costs far more.
        return [(_WHITESPACE.sub(" ", simple.group(1) or "").strip(), addr.lower())]
    found: list[tuple[str, str]] = []
    try:
        header = policy.default.header_fetch_parse(name, raw)
        found = [(a.display_name or "", a.addr_spec or "") for a in header.addresses]
    except Exception:  # policy.default raises on some broken address headers
        found = []
    if not found or not all(_ADDR_SPEC.fullmatch(addr) for _, addr in found):
        # The lenient old parser copes with much that the new one rejects.
        unfolded = FOLD.sub("", raw)
        fallback = [(decode_header_value(n), a) for n, a in getaddresses([unfolded])]
        if _plausible_count(fallback) > _plausible_count(found):
            found = fallback
    result = []
    for display, addr in found:
        cleaned = _clean_address(addr)
        if cleaned:
            result.append((fix_8bit(display).strip().strip('"').strip(), cleaned))
    if not result and (match := _ADDR_SPEC.search(raw)):
        result.append(("", match.group().lower()))  # last resort: any address in the value
    return result


@dataclass(frozen=True)
class FromField:
    """The From field as privbot reads it: its mailboxes, or why none can be used."""

    mailboxes: tuple[tuple[str, str], ...]  # (display name, lower-cased address), in order
    problem: str | None = None  # set when `mailboxes` is empty

    @property
    def address(self) -> str | None:
        """The mailbox privbot answers and acts for: the first one."""
        return self.mailboxes[0][1] if self.mailboxes else None

    @property
    def name(self) -> str:
        return self.mailboxes[0][0] if self.mailboxes else ""


def from_field(msg: Message, hints: tuple[str, ...] = ()) -> FromField:
    """Read From the standard way, the one way privbot reads it (the parser, the receiver's
    DMARC check): the stdlib's `email.headerregistry`, and only where `email.utils` reads
    the same mailboxes. Where the two disagree the field is ambiguous (an encoded word
    posing as an address, a second address after the first), and a verifier elsewhere may
    have read the other one: no From is better than a guess.
    """
    values = raw_values(msg, "from", hints)
    if not values:
        return FromField((), "no From header")
    if len(values) > 1:
        # RFC 5322 allows one; which one a verifier read is anyone's guess (RFC 7489 6.6.1).
        return FromField((), f"{len(values)} From fields")
    return read_mailboxes("From", values[0], hints)


def read_mailboxes(name: str, value: str, hints: tuple[str, ...] = ()) -> FromField:
    """The mailboxes of one address field, if both stdlib parsers agree on them."""
    unfolded = FOLD.sub("", value).replace("\r", "").replace("\n", "")
    pairs = getaddresses([unfolded])
    registry = _registry(name, unfolded)
    if registry is None:
        # The registry refuses a name whose decoded text holds a line break (a hostile one).
        # Its addresses are read again with every encoded word as a plain word (inside an
        # address that reads differently from email.utils: ambiguous, as it should be), the
        # names decoded by privbot's decoder.
        registry = _registry(name, _ENCODED_WORD.sub("x", unfolded))
        if registry is None:
            return FromField((), f"{name} cannot be parsed")
        names = {_split_addr(a): decode_header_value(n) for n, a in pairs}
        registry = [(names.get((u.lower(), d.lower()), ""), a, u, d) for _, a, u, d in registry]
    # Compared: the addresses with a domain. email.utils does not decode encoded words, so
    # it may see a bare word more (a comma inside one); a bare word is never answered.
    utils = [_split_addr(addr) for _, addr in pairs]
    seen = list(dict.fromkeys((u.lower(), d.lower()) for _, _, u, d in registry if d))
    if seen != list(dict.fromkeys(pair for pair in utils if pair is not None)):
        return FromField((), f"{name} is ambiguous: the stdlib's parsers read it differently")
    if not registry:
        return FromField((), f"no usable address in {name}")
    found: dict[str, str] = {}
    for display, addr_spec, _, _ in registry:
        # The registry decodes a mislabelled encoded word (Shift_JIS bytes labelled
        # ISO-2022-JP) to surrogate escapes, which no reply could encode.
        found.setdefault(addr_spec.lower(), fix_8bit(display.strip(), hints))
    return FromField(tuple((n, a) for a, n in found.items()))


def _registry(name: str, value: str) -> list[tuple[str, str, str, str]] | None:
    """(display name, addr-spec, local part, domain) per mailbox by email.headerregistry;
    None if it refuses the field."""
    try:
        header = policy.default.header_fetch_parse(name, value)
        return [
            (a.display_name or "", a.addr_spec, a.username, a.domain)
            for a in header.addresses
            # A bare word without a domain ("MAILER-DAEMON") is kept: screening reads it.
            if (a.domain and a.username) or _LOCAL_ONLY.fullmatch(a.username)
        ]
    except Exception:  # ValueError for a name with a line break; a few broken fields
        return None


def _split_addr(addr: str) -> tuple[str, str] | None:
    """(local part without quotes, domain), lower-cased, of an address from getaddresses;
    None without a domain."""
    local, at, domain = addr.strip().rpartition("@")
    if not (at and local and domain):
        return None
    if len(local) > 1 and local.startswith('"') and local.endswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    return local.lower(), domain.lower()


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


def parse_message_id(value: str | None) -> str | None:
    """The one form a Message-ID is stored, compared and written back in: no angle
    brackets, no whitespace (`<a@b> (comment)` and a folded `<a@\n b>` are `a@b`).

    The store, the parser and threading all use it, so an id matches however it was written;
    an id too long for a header line is none (it could not be written back, nor stored).
    """
    if not value:
        return None
    match = _ANGLE_ID.search(value)
    return _canonical_id(match.group(1) if match else value)


def message_id_of(msg: Message) -> str | None:
    """The Message-ID of a headers-only parse, exactly as the full parse gives it."""
    values = raw_values(msg, "message-id")
    return parse_message_id(decode_header_value(values[0])) if values else None


def parse_references(values: tuple[str, ...]) -> tuple[str, ...]:
    ids: list[str] = []
    for value in values:
        for found in _ANGLE_ID.findall(value) or value.split():
            if ident := _canonical_id(found):
                ids.append(ident)
    return tuple(ids)


# Our replies repeat an id in In-Reply-To and References, on a line of at most 998.
MAX_MESSAGE_ID = 900


def _canonical_id(text: str) -> str | None:
    ident = _WHITESPACE.sub("", text).strip("<>")  # a stray bracket: "<abc" without its ">"
    return ident if 0 < len(ident) <= MAX_MESSAGE_ID else None
