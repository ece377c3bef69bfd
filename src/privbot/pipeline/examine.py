"""Examine a message: parse, screen, classify, verify the sender. Pure: nothing is written.

The pipeline acts on the result inside its transaction; `privbot classify` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from privbot.app import App
from privbot.config import Settings
from privbot.mail.authn import Verdict, sender_verdict
from privbot.mail.parse import ParseError, parse_message
from privbot.mail.parsed import ParsedMessage
from privbot.mail.screen import ScreenContext, screen
from privbot.pipeline.plan import plan
from privbot.pipeline.reply import reply_parts
from privbot.understand import Classification
from privbot.understand.blind import Seen

NOT_EXAMINED = Verdict("none", "not examined")


@dataclass(frozen=True)
class Examination:
    """What a message is, before anything is done with it."""

    parsed: ParsedMessage | None
    problem: str | None = None  # it cannot be handled at all: quarantine for staff
    skip: str | None = None  # it must never be answered (a machine, spam)
    understanding: Classification | None = None
    verdict: Verdict = NOT_EXAMINED  # is the sender who From says?


def examine(
    app: App, raw: bytes, envelope_from: str | None = None, source: str | None = None
) -> Examination:
    """Parse, screen, classify and verify raw bytes; no database.

    `source`: the channel that stored it (`Message.source`), which decides whose word on
    the sender counts (`verify_sender`).
    """
    try:
        parsed = parse_message(raw)
    except ParseError as exc:
        return Examination(None, problem=f"cannot be parsed: {exc}")
    if parsed.from_addr is None:
        return Examination(parsed, problem="no sender address to answer")
    if parsed.limits_hit:
        # Answering what we could not read whole would be a guess: staff look instead.
        return Examination(parsed, problem="too big to read whole: " + "; ".join(parsed.limits_hit))
    context = ScreenContext(
        our_addresses=app.settings.our_addresses,
        our_message_id_domain=app.settings.domain,
        envelope_sender=envelope_from,
    )
    reason = screen(parsed, context)
    if reason is not None:
        return Examination(parsed, skip=reason)
    understanding = app.classifier.classify(parsed.new_text, parsed.subject, parsed.forwarded_text)
    if understanding.spam:
        skip = "spam: no privacy request, spam signals"
        return Examination(parsed, skip=skip, understanding=understanding)
    if understanding.machine:
        # No header said so, but the words do: an auto-reply, a helpdesk acknowledgement,
        # a challenge. A person who also asks for something is never set aside for this.
        skip = "machine wording: written by an auto-responder, not a person"
        return Examination(parsed, skip=skip, understanding=understanding)
    verdict = verify_sender(app.settings, parsed, source)
    return Examination(parsed, understanding=understanding, verdict=verdict)


def verify_sender(settings: Settings, parsed: ParsedMessage, source: str | None) -> Verdict:
    """Is the sender who From says, by the word of the one who can know for this channel?

    A chat request was confirmed through a link mailed to its address: that proves it. Mail
    our SMTP receiver took carries its own Authentication-Results on top (forged copies
    removed); any other mail, the configured upstream server's (PRIVBOT_TRUSTED_AUTHSERV_ID).
    """
    if source == "chat":
        return Verdict("pass", f"confirmed through the link mailed to {parsed.from_addr}")
    if source == "smtp":
        return sender_verdict(parsed, settings.receiver_authserv_id)
    return sender_verdict(parsed, settings.trusted_authserv_id)


def foresee(app: App, raw: bytes) -> Seen:
    """What the pipeline would do with a message, without doing it: screened, or what it
    understood and would apply or hand to staff (the blind evaluation measures this)."""
    seen = examine(app, raw)
    u = seen.understanding
    if seen.problem is not None or seen.skip is not None or u is None or seen.parsed is None:
        return Seen(screened=True)
    decision = plan(u, app.classifier.intents, seen.parsed.from_addr or "", None)
    requests = app.classifier.intents.requests
    applied = bool(decision.opt_out_scopes)
    tickets = frozenset() if u.low_confidence else frozenset(decision.intents) & requests
    # What the reply would quote and say: its parts, as the pipeline builds them.
    parts = reply_parts(app, u, decision)
    quoted = [(c.heading, c.text) for part in parts for c in part["citations"]]
    return Seen(
        screened=False,
        intents=frozenset(decision.intents),
        low_confidence=u.low_confidence,
        sections=frozenset(heading for heading, _ in quoted),
        unanswered=any(p["intent"] == "question" and not p["answered"] for p in parts),
        opt_out_applied=applied,
        request_tickets=tickets - ({"opt_out"} if applied else frozenset()),
        language=app.replies.language(u.language),
        quoted_twice=len(quoted) != len(set(quoted)),
    )
