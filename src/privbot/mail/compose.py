"""Build the reply as an e-mail: headers that thread it and keep other robots quiet."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr

# Reply and forward prefixes of the clients JunoCloud's users write with, each with an
# optional counter ("AW[2]:"): Re, AW, SV, VS, Antw, Odp, R, RES, Rif, ΑΠ, Vá; Fwd, WG, TR,
# RV, ENC, Doorst, VL, PD, I, ΠΡΘ.
REPLY_PREFIXES = "re|aw|sv|vs|antw|odp|r|res|rif|απ|v[aá]"
FORWARD_PREFIXES = "fwd?|wg|tr|rv|enc|doorst|vl|pd|i|πρθ"
_PREFIX = re.compile(
    rf"^\s*((?:{REPLY_PREFIXES}|{FORWARD_PREFIXES})\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_REPLY = re.compile(rf"^\s*(?:{REPLY_PREFIXES})\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD = re.compile(rf"^\s*(?:{FORWARD_PREFIXES})\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
# Quoted-printable keeps the body readable in raw form (base64 is compat32's utf-8 default).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
# Keep References short: the thread root and the most recent ids are what clients use.
MAX_REFERENCES = 10
# RFC 5322 2.1.1: no line may be longer (CRLF not counted); strict relays refuse it with 500.
MAX_LINE = 998
# What a reply echoes of the sender's own words (display name, subject): at most this long.
NAME_LIMIT = 80
SUBJECT_LIMIT = 200
# Control characters and bidi overrides: none belongs in a name or subject we repeat.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Reply:
    message_id: str  # without angle brackets
    subject: str
    message: Message


def new_message_id(domain: str) -> str:
    # The "privbot." prefix lets screening recognise our own mail if it ever comes back.
    return f"privbot.{uuid.uuid4().hex}@{domain}"


def strip_prefixes(subject: str) -> str:
    """The subject without its reply and forward prefixes ("Re: AW: Fwd:")."""
    return _PREFIX.sub("", subject).strip()


def is_reply(subject: str) -> bool:
    """The subject answers an earlier mail ("Re:", "AW:"), rather than forwarding one."""
    return bool(_REPLY.match(subject))


def is_forward(subject: str) -> bool:
    """The subject passes an earlier mail on ("Fwd:", "WG:"), rather than answering it."""
    return bool(_FORWARD.match(subject))


def one_line(text: str, limit: int | None = None) -> str:
    """Sender-written text as we may repeat it: one line, at most `limit` characters.

    Anyone can forge From, and the reply goes there: a name or subject with line breaks
    would put the forger's paragraphs into our mail, and a long one their essay.
    """
    text = " ".join(_HIDDEN.sub(" ", text).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def compose_reply(
    *,
    from_addr: str,
    to_addr: str,
    subject: str,
    body: str,
    domain: str,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    automatic: bool = True,
    language: str | None = None,
) -> Reply:
    # compat32's MIMEText: the modern header registry costs milliseconds per reply, and
    # every header here is either plain ASCII or encoded explicitly below.
    msg = MIMEText(body, "plain", _UTF8_QP)
    message_id = new_message_id(domain)
    msg["From"] = formataddr(("JunoCloud Privacy", from_addr))
    msg["To"] = _utf8_header(to_addr)
    msg["Subject"] = subject if _plain(subject) else _encoded(subject)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        # An id no line can carry is left out: shortened, it would name another message.
        refs = [r for r in references if r != in_reply_to] + [in_reply_to]
        refs = [r for r in refs if _fits_a_line(r)]
        if len(refs) > MAX_REFERENCES:
            refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
        if _fits_a_line(in_reply_to):
            msg["In-Reply-To"] = f"<{in_reply_to}>"
        if refs:
            msg["References"] = " ".join(f"<{r}>" for r in refs)
    if automatic:
        # RFC 3834 and Exchange's own header: other responders must not answer us.
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = from_addr
    if language and language.isascii() and language.replace("-", "").isalnum():
        msg["Content-Language"] = language  # RFC 3282: what the reply is written in
    return Reply(message_id, subject, msg)


def _plain(subject: str) -> bool:
    """Whether the subject can go as it is: ASCII, one line, and every word short enough to
    fold onto a line of its own (folding happens only at spaces)."""
    longest = max((len(word) for word in subject.split(" ")), default=0)
    return (
        subject.isascii()
        and not ("\r" in subject or "\n" in subject)
        and (len("Subject: ") + longest <= MAX_LINE)
    )


def _encoded(subject: str) -> str:
    # RFC 2047 encoded words may be split anywhere, so any subject folds into short lines.
    return Header(subject, "utf-8", header_name="Subject").encode()


def _fits_a_line(ident: str) -> bool:
    """Whether a message id fits on a folded header line (" <id>") of its own."""
    return len(ident) + 3 <= MAX_LINE


def _utf8_header(value: str) -> str:
    """A header value that compat32 writes out as raw UTF-8 (RFC 6532), not as an RFC 2047
    encoded word: encoded words are not allowed in an address (`jörg@exämple.de`), so
    a non-ASCII address must travel as UTF-8, and the sender then uses SMTPUTF8.

    compat32 keeps 8-bit header bytes as surrogate escapes (as its parser does) and writes
    them back unchanged, so `msg.as_bytes()` gives the UTF-8 bytes.
    """
    return value if value.isascii() else value.encode("utf-8").decode("ascii", "surrogateescape")


def as_bytes(msg: Message) -> bytes:
    """The composed mail as bytes, as `msg.as_bytes()` gives them, without its cost.

    compose_reply writes only ASCII headers (a non-ASCII subject is encoded above) and a
    quoted-printable body, so serialising needs no more than folding long header lines;
    the stdlib generator spent more on that than the rest of composing. Anything else (a
    non-ASCII address, kept as UTF-8) goes through the stdlib.
    """
    payload = msg.get_payload()
    if msg.is_multipart() or not isinstance(payload, str) or not payload.isascii():
        return msg.as_bytes()
    lines = []
    for name, value in msg.items():
        if not isinstance(value, str) or not value.isascii():
            return msg.as_bytes()
        lines.append(_fold(f"{name}: {value}"))
    return ("\n".join(lines) + "\n\n" + payload).encode("ascii")


def _fold(line: str, limit: int = 78) -> str:
    """A header line folded at spaces to lines of at most `limit` where words allow."""
    if len(line) <= limit or "\n" in line:  # short, or folded already (an encoded subject)
        return line
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    if " " not in out[0]:
        out[0] += " "  # the name alone on the first line: keep its space, as the stdlib does
    return "\n".join(out)
