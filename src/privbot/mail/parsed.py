"""What parsing a message yields: the one shape every later step reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    # A note privbot put in its place after the evidence was checked (the bytes are gone).
    removed: bool = False


@dataclass(frozen=True)
class ParsedMessage:
    """A message reduced to what privbot reads. Header names in `headers` are lower-case."""

    message_id: str | None  # as in the header, angle brackets stripped
    from_addr: str | None  # lower-cased address, None if there is no usable From
    from_name: str
    reply_to: str | None  # lower-cased address of Reply-To, if any
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: str | None
    in_reply_to: str | None  # angle brackets stripped
    references: tuple[str, ...]  # angle brackets stripped, oldest first
    content_type: str  # top-level, e.g. "multipart/report"
    text: str  # the whole readable body as plain text (HTML converted)
    new_text: str  # the text the sender wrote now: no quoted reply, no signature
    quoted_text: str  # what was quoted or forwarded below/above the new text
    signature: str
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # every value, decoded
    defects: tuple[str, ...] = ()  # notes about damage repaired while parsing
    # Every mailbox in From (RFC 5322 allows several; privbot answers the first, from_addr).
    from_all: tuple[str, ...] = ()
    # The quoted part of a forward ("Fwd:", "---- Forwarded message ----"), not of a reply:
    # the sender passes it on, their own old request again or something to show us.
    forwarded_text: str = ""

    @property
    def limits_hit(self) -> tuple[str, ...]:
        """Safety limits the parser stopped at: the text may be incomplete, or hostile."""
        return tuple(d for d in self.defects if d.startswith("limit: "))

    def header(self, name: str) -> str | None:
        """First value of a header, or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None
