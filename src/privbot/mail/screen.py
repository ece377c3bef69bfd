"""Never answer a machine: decide whether an inbound message came from software.

Each rule looks at one kind of evidence and returns a short human-readable reason, or None.
`screen` returns the first reason in `RULES` order. Rules err towards screening only where
the evidence is specific to machines; ordinary people must always get through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import getaddresses

from privbot.mail.parsed import ParsedMessage
from privbot.mail.quotes import header_lines


@dataclass(frozen=True)
class ScreenContext:
    our_addresses: frozenset[str]  # lower-case, e.g. {"support@junocloud.me"}
    our_message_id_domain: str  # e.g. "junocloud.me"; our Message-IDs are <privbot.<hex>@...>
    envelope_sender: str | None = None  # SMTP MAIL FROM / Return-Path; "" is the null sender


Rule = Callable[[ParsedMessage, ScreenContext], str | None]

_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w.-]+)", re.IGNORECASE)
_BOUNCE_SENDER_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|post[-_.]?master)$", re.IGNORECASE)
_BOUNCE_SENDER_NAME = re.compile(
    r"^(?:mail delivery (?:subsystem|system|service)|mailer[-_ ]daemon|postmaster)$",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"""^\s*(?:
        undeliver(?:ed|able)\s+mail\b
      | undelivered\s+mail\s+returned\s+to\s+sender
      | undeliverable\s*:
      | delivery\s+status\s+notification\s*\((?:failure|delay)\)
      | delivery\s+has\s+failed\b
      | mail\s+delivery\s+failed
      | failure\s+notice\b
      | returned\s+mail\s*:
      | unzustellbar\s*:
      | non\s+remis\s*:
      | non-?delivery\s+(?:report|notification)
      | delayed\s+mail\b
      | warning\s*:\s*could\s+not\s+send\s+message
      | email\s+bounce\s+notification
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Microsoft's JMRP complaint reports (Hotmail/Outlook.com) are not ARF-typed; this is their
# fixed subject.
_JMRP_SUBJECT = re.compile(r"^\s*complaint about message from \S+\s*$", re.IGNORECASE)
# Precedence values that mark machine mail, and the kind of mail each one means.
_BULK_PRECEDENCE = {
    "list": "mailing list",
    "bulk": "bulk mail",
    "junk": "bulk mail",
    "auto_reply": "auto-reply",
    "auto-reply": "auto-reply",
}
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder")
# Subjects that auto-responders put in front of (or instead of) the original subject.
_AUTO_REPLY_SUBJECT = re.compile(
    r"""^\s*(?:\[\s*)?(?:
        out\s+of\s+(?:the\s+)?office\b
      | auto(?:matic|matische|matisch)?[-\s]?(?:reply|response|antwort|antwoord|answer)\b
      | auto\s*:
      | autoreply\b
      | abwesenheits?(?:notiz|meldung|nachricht)\b
      | r[ée]ponse\s+automatique\b
      | absen(?:ce|t|te)\s*(?::|du\s+bureau|\(|$)
      | respuesta\s+autom[áa]tica\b
      | fuera\s+de\s+la\s+oficina\b
      | risposta\s+automatica\b
      | fuori\s+sede\b
      | afwezigheids?(?:melding|bericht)\b
      | resposta\s+autom[áa]tica\b
      | ausente\s*(?::|\(|-|$)
      | automatyczna\s+odpowied[źz]
      | vacation\s+(?:reply|notice|message)\b
      | on\s+vacation\s*:
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Phrases auto-responders put anywhere in the subject ("John is out of the office ...").
_AUTO_REPLY_PHRASE = re.compile(
    r"\bis\s+out\s+of\s+(?:the\s+)?office\b|\((?:automatic|auto)[-\s]?(?:reply|response)\)",
    re.IGNORECASE,
)
# Outlook's read receipts (and "not read" notices) in the 15 languages, sent as ordinary
# mail: "Leído: <subject>" over the reported mail's own To/Subject/Sent lines.
_READ_RECEIPT_SUBJECT = re.compile(
    r"^\s*(?:read|not\s+read|gelesen|nicht\s+gelesen|lu|non\s+lu|le[íi]do|no\s+le[íi]do|letto"
    r"|non\s+letto|gelezen|niet\s+gelezen|lida|n[ãa]o\s+lida|przeczytan[eoa]|l[äa]st|l[æa]st"
    r"|p[řr]e[čc]teno|citit|αναγνωσμένο|αναγνωσμενο|διαβάστηκε|olvasott|elolvasva|luettu)\s*:",
    re.IGNORECASE,
)
_CHALLENGE_HEADERS = ("x-bluebottle-request", "x-boxbe-request", "x-spamarrest-token")
_CHALLENGE_DOMAINS = ("boxbe.com", "bluebottle.com", "spamarrest.com", "mailblocks.com")
_CHALLENGE_SUBJECT = re.compile(
    r"""(?:please\s+(?:verify|confirm)\s+(?:that\s+)?(?:you|your\s+(?:e-?mail|message))
      | (?:sender|e-?mail)\s+verification\s+(?:required|request)
      | (?:add|added)\s+(?:you|yourself)\s+to\s+(?:my|the|our)\s+(?:white\s*list|allowed\s+list)
      | white\s*list(?:ing)?\s+(?:request|confirmation|verification)
      | your\s+message\s+(?:is\s+)?(?:awaiting|requires)\s+(?:verification|approval)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_LIST_HEADERS = (
    "list-id",
    "list-unsubscribe",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-owner",
    "list-archive",
    "mailing-list",
    "x-mailman-version",
    "x-mlserver",  # fml, a list manager common in Japan
    "x-ml-name",
)
# Local parts used only by software. Each is a convention for "do not write back":
#   noreply / no-reply / do-not-reply / donotreply: explicitly say so (also as a suffix, as in
#     calendar-noreply@); bounce(s): VERP return addresses (bounces+123=...); mailer-daemon /
#     postmaster: MTA addresses; notification(s): service notices (GitHub, banks, shops).
_NOREPLY_LOCAL = re.compile(
    r"""(?:^|[-_.+])(?:no[-_.]?reply|do[-_.]?not[-_.]?reply)(?:$|[-_.+\d])
      | ^(?:bounces?|mailer[-_.]?daemon|postmaster|notifications?)(?:$|[-_.+=])
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _local_part(addr: str | None) -> str:
    return (addr or "").rsplit("@", 1)[0]


def _header_addresses(msg: ParsedMessage, name: str) -> list[str]:
    values = msg.headers.get(name, ())
    return [addr.strip().lower() for _, addr in getaddresses(list(values)) if addr.strip()]


def _null_path(value: str | None) -> bool:
    return value is not None and value.strip().strip("<>").strip() == ""


# ---------------------------------------------------------------------------------------------
# rules


def own_mail(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Our own replies (or copies of them) coming back would make us talk to ourselves."""
    if msg.from_addr and msg.from_addr in ctx.our_addresses:
        return f"own mail: From is our address {msg.from_addr}"
    for addr in _header_addresses(msg, "sender"):
        if addr in ctx.our_addresses:
            return f"own mail: Sender is our address {addr}"
    for value in msg.headers.get("x-loop", ()):
        if any(ours in value.lower() for ours in ctx.our_addresses):
            return f"own mail: X-Loop {value.strip()}"
    mid = (msg.message_id or "").lower()
    domain = ctx.our_message_id_domain.lower()
    if domain and mid.startswith("privbot.") and mid.endswith("@" + domain):
        return f"own mail: Message-ID {msg.message_id} is ours"
    return None


def feedback_report(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """ARF abuse/opt-out reports from mailbox providers (RFC 5965) are not people writing."""
    if _report_type(msg) == "feedback-report":
        return "feedback report: multipart/report feedback-report"
    if any(a.content_type == "message/feedback-report" for a in msg.attachments):
        return "feedback report: message/feedback-report part"
    if _JMRP_SUBJECT.match(msg.subject):
        return f"feedback report: subject {msg.subject.strip()[:60]!r}"
    return None


def bounce_report(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Delivery status notifications (and read receipts) in their standard MIME form."""
    if msg.content_type == "multipart/report":
        return f"bounce: multipart/report {_report_type(msg) or 'without report-type'}"
    if any(a.content_type == "message/delivery-status" for a in msg.attachments):
        return "bounce: message/delivery-status part"
    return None


def null_sender(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """RFC 5321 4.5.5: mail with the null reverse-path must never be answered."""
    if _null_path(ctx.envelope_sender):
        return "bounce: null envelope sender <>"
    if any(_null_path(v) for v in msg.headers.get("return-path", ())):
        return "bounce: Return-Path: <>"
    return None


def mailer_daemon(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Bounces from MTAs that do not use multipart/report still come from these senders."""
    if _BOUNCE_SENDER_LOCAL.match(_local_part(msg.from_addr)):
        return f"bounce: From {msg.from_addr}"
    if _BOUNCE_SENDER_NAME.match(msg.from_name.strip()):
        return f"bounce: From name {msg.from_name.strip()!r}"
    return None


def bounce_subject(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    if _BOUNCE_SUBJECT.match(msg.subject):
        return f"bounce: subject {msg.subject.strip()[:60]!r}"
    return None


def auto_submitted(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """RFC 3834: any Auto-Submitted value other than "no" marks machine-sent mail."""
    for value in msg.headers.get("auto-submitted", ()):
        keyword = re.split(r"[\s;(]", value.strip().lower(), maxsplit=1)[0]
        if keyword and keyword != "no":
            return f"auto-reply: Auto-Submitted: {value.strip()}"
    return None


def autoreply_headers(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Vendor auto-responder headers, and Exchange's marks on automatic messages."""
    for name in _AUTOREPLY_HEADERS:
        for value in msg.headers.get(name, ()):
            if value.strip().lower() not in ("no", "false", "0"):
                return f"auto-reply: {name}: {value.strip()}"
    # Exchange sets this on its own automatic messages (OOF, receipts); it is only ever
    # outgoing on our replies, so seeing it inbound means another system's automat.
    if "x-auto-response-suppress" in msg.headers:
        value = msg.headers["x-auto-response-suppress"][0].strip()
        return f"auto-reply: X-Auto-Response-Suppress: {value}"
    # Set on messages that Exchange inbox rules generated or redirected: answering those is
    # how mail loops start.
    if "x-ms-exchange-inbox-rules-loop" in msg.headers:
        return "auto-reply: X-MS-Exchange-Inbox-Rules-Loop"
    return None


def bulk_precedence(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Precedence: list / bulk / junk / auto_reply: no person is waiting for an answer."""
    for value in msg.headers.get("precedence", ()):
        kind = _BULK_PRECEDENCE.get(value.strip().lower())
        if kind:
            return f"{kind}: Precedence: {value.strip()}"
    return None


def auto_reply_subject(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Out-of-office and auto-responder subjects in the languages we see."""
    subject = msg.subject.strip()
    if _AUTO_REPLY_SUBJECT.match(subject) or _AUTO_REPLY_PHRASE.search(subject):
        return f"auto-reply: subject {subject[:60]!r}"
    return None


def read_receipt(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """A read receipt without MDN headers: its subject's prefix and the header lines of the
    mail it reports. Both are needed: a person may well write "Read: chapter 3"."""
    if _READ_RECEIPT_SUBJECT.match(msg.subject) and header_lines(msg.text) >= 2:
        return f"read receipt: subject {msg.subject.strip()[:60]!r}"
    return None


def challenge_response(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Anti-spam "prove you are human" systems; answering them confirms our address."""
    for name in _CHALLENGE_HEADERS:
        if name in msg.headers:
            return f"challenge-response: {name} header"
    domain = (msg.from_addr or "").rsplit("@", 1)[-1]
    if any(domain == d or domain.endswith("." + d) for d in _CHALLENGE_DOMAINS):
        return f"challenge-response: From {msg.from_addr}"
    if _CHALLENGE_SUBJECT.search(msg.subject):
        return f"challenge-response: subject {msg.subject.strip()[:60]!r}"
    return None


def mailing_list(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """List and newsletter traffic (RFC 2369/2919 headers): nobody there expects an answer."""
    for name in _LIST_HEADERS:
        if name in msg.headers:
            return f"mailing list: {name} header"
    return None


def noreply_sender(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    local = _local_part(msg.from_addr)
    if local and _NOREPLY_LOCAL.search(local):
        return f"no-reply sender: {msg.from_addr}"
    return None


def _report_type(msg: ParsedMessage) -> str | None:
    if msg.content_type != "multipart/report":
        return None
    match = _REPORT_TYPE.search(msg.header("content-type") or "")
    return match.group(1).lower() if match else None


RULES: tuple[Rule, ...] = (
    own_mail,
    feedback_report,
    bounce_report,
    null_sender,
    mailer_daemon,
    bounce_subject,
    auto_submitted,
    autoreply_headers,
    bulk_precedence,
    auto_reply_subject,
    read_receipt,
    challenge_response,
    mailing_list,
    noreply_sender,
)


def screen(msg: ParsedMessage, ctx: ScreenContext) -> str | None:
    """Why this message must not be answered, or None if a person may have written it."""
    for rule in RULES:
        reason = rule(msg, ctx)
        if reason:
            return reason
    return None
