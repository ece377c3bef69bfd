"""Build the reply as an e-mail: headers that thread it and keep other robots quiet."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from privbot.models import utcnow

TAG = re.compile(r"\[JC-(\d+)\]", re.IGNORECASE)
# Reply and forward prefixes in the languages JunoCloud's users write in.
_PREFIX = re.compile(
    r"^\s*((re|aw|sv|wg|fw|fwd|tr|rv|r|rif|antw|res|enc)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
# Keep References short: the thread root and the most recent ids are what clients use.
MAX_REFERENCES = 10


@dataclass(frozen=True)
class Reply:
    message_id: str  # without angle brackets
    subject: str
    message: EmailMessage


def new_message_id(domain: str) -> str:
    # The "privbot." prefix lets screening recognise our own mail if it ever comes back.
    return f"privbot.{uuid.uuid4().hex}@{domain}"


def reply_subject(original: str, ticket_id: int) -> str:
    """'Re: <original> [JC-<id>]', without stacking prefixes or tags."""
    base = TAG.sub("", original or "").strip()
    base = _PREFIX.sub("", base).strip() or "Your message"
    return f"Re: {base} [JC-{ticket_id}]"


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
) -> Reply:
    msg = EmailMessage()
    message_id = new_message_id(domain)
    msg["From"] = formataddr(("JunoCloud Privacy", from_addr))
    msg["To"] = to_addr
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        refs = [r for r in references if r != in_reply_to] + [in_reply_to]
        if len(refs) > MAX_REFERENCES:
            refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if automatic:
        # RFC 3834 and Exchange's own header: other responders must not answer us.
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = from_addr
    msg.set_content(body, charset="utf-8")
    return Reply(message_id, subject, msg)
