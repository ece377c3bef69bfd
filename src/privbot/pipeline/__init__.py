"""The whole flow of one message, top to bottom.

    intake ─► store ─► parse ─► screen ─► classify ─► thread ─► act ─► reply (outbox)

Channels (IMAP watcher, SMTP receiver, `privbot ingest`) only call `receive`: the raw bytes
are stored and committed first. `process` then examines the message (parse, screen,
classify, verify the sender: pure, nothing written) and writes everything it decides in ONE
transaction, so a crash at any point leaves either nothing done (the message is still
`received` and is done again) or everything done. Each step is a call into a module named
for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from privbot import optouts, search
from privbot.app import App
from privbot.audit import record
from privbot.crashpoints import crash_point
from privbot.mail.authn import Verdict
from privbot.mail.parsed import ParsedMessage
from privbot.models import Message, MessageStatus, Outgoing, Ticket, TicketStatus, utcnow
from privbot.pipeline.examine import Examination, examine
from privbot.pipeline.plan import Plan, plan
from privbot.pipeline.reply import queue_answer
from privbot.pipeline.store import store_message, store_messages
from privbot.staff import notify
from privbot.tickets import find_thread, open_ticket
from privbot.understand import Classification

log = logging.getLogger(__name__)

# Messages handled per transaction: enough to share its cost, few enough that the first
# replies leave (the outbox waits for the commit) while the rest are still being handled.
TRANSACTION_SIZE = 10


@dataclass(frozen=True)
class Outcome:
    """What became of one message; what channels log and the demo prints."""

    message: int
    status: str  # handled, screened, quarantined, failed, received (not done yet)
    reason: str | None = None
    ticket: int | None = None
    reply: int | None = None  # outbox row id
    duplicate: bool = False


def receive(
    app: App,
    raw: bytes,
    *,
    source: str,
    source_ref: str | None = None,
    envelope_from: str | None = None,
) -> Outcome:
    """Intake for every channel: store durably, then process."""
    stored = store_message(
        app.sessions, raw, source=source, source_ref=source_ref, envelope_from=envelope_from
    )
    crash_point(app.settings, "after_store")
    outcome = process(app, stored.id)
    return outcome if stored.new else _as_duplicate(outcome)


def receive_batch(app: App, items: list[tuple[bytes, str | None]], *, source: str) -> list[Outcome]:
    """Intake of several messages (an IMAP fetch): stored in one commit, then processed."""
    stored = store_messages(app.sessions, items, source=source)
    crash_point(app.settings, "after_store")
    jobs = [(entry.id, raw) for entry, (raw, _) in zip(stored, items, strict=True)]
    outcomes = []
    for start in range(0, len(jobs), TRANSACTION_SIZE):
        outcomes += process_batch(app, jobs[start : start + TRANSACTION_SIZE])
    return [o if e.new else _as_duplicate(o) for e, o in zip(stored, outcomes, strict=True)]


def process(app: App, message_id: int, raw: bytes | None = None) -> Outcome:
    """Parse, screen, thread, act and queue the reply for a stored message, exactly once.

    `raw`: the stored bytes when the caller still holds them (saves reading them back).
    """
    return process_batch(app, [(message_id, raw)])[0]


def process_batch(app: App, jobs: list[tuple[int, bytes | None]]) -> list[Outcome]:
    """`process` for several stored messages: one transaction, a savepoint for each message.

    A message that fails is rolled back alone and counted (`_record_failure`); the others
    commit together. Nothing is done twice: a message is claimed only while `received`.
    """
    # The slow, pure part first, outside any transaction: SQLite has one writer, and every
    # other writer (the outbox marking a reply sent) would wait for it.
    examined: dict[int, Examination] = {}
    failed: dict[int, Exception] = {}
    waiting = _still_received(app, [i for i, _ in jobs])  # another process may have done some
    for message_id, raw in jobs:
        if message_id not in waiting:
            continue
        try:
            seen = _examine_stored(app, message_id) if raw is None else _examine_raw(app, raw)
        except Exception as exc:
            log.exception("examining message %s failed", message_id,
                          extra={"message_id": message_id})  # fmt: skip
            failed[message_id] = exc
            continue
        if seen is not None:  # None: done already
            examined[message_id] = seen
    handled: dict[int, Outcome] = {}
    with app.sessions.begin() as session:
        for message in _claim(session, list(examined)):  # not those another worker holds
            try:
                with session.begin_nested():
                    handled[message.id] = _handle(app, session, message, examined[message.id])
            except DBAPIError:
                raise  # the database is away: nothing was done; the batch waits for next round
            except Exception as exc:
                log.exception("processing message %s failed", message.id,
                              extra={"message_id": message.id})  # fmt: skip
                failed[message.id] = exc
        crash_point(app.settings, "mid_transaction")  # all written, nothing committed
    if any(o.reply is not None for o in handled.values()):
        app.outbox_ready.set()
    return [
        handled[i] if i in handled
        else _record_failure(app, i, failed[i]) if i in failed
        else current_outcome(app, i)
        for i, _ in jobs
    ]  # fmt: skip


def process_pending(app: App, limit: int = 100) -> list[Outcome]:
    """Process stored messages still waiting: SMTP intake, and anything left by a crash.

    Mail the IMAP watcher stored in the last minute is its own to finish (it holds the
    bytes and moves the message after); only older leftovers are taken here.
    """
    fresh = utcnow() - timedelta(seconds=60)
    with app.sessions() as session:
        ids = session.scalars(
            select(Message.id)
            .where(
                Message.status == MessageStatus.RECEIVED,
                (Message.source != "imap") | (Message.received_at < fresh),
            )
            .order_by(Message.id)
            .limit(limit)
        ).all()
    return process_batch(app, [(i, None) for i in ids])


class RetryError(ValueError):
    """The message cannot be put through again; the message says why."""


# What staff may send through the pipeline again (Mailman's "unshunt").
RETRYABLE = frozenset({MessageStatus.FAILED, MessageStatus.QUARANTINED})


def retry(app: App, message_id: int, *, actor: str) -> Outcome:
    """Put a failed or quarantined message back through the pipeline, once more from the
    start (its stored bytes, attempts counted afresh), after staff fixed the cause."""
    with app.sessions.begin() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None:
            raise RetryError(f"no stored message {message_id}")
        if message.status not in RETRYABLE:
            raise RetryError(
                f"message {message_id} is {message.status}: only failed or quarantined mail "
                "is retried"
            )
        previous, reason = message.status, message.reason
        message.status = MessageStatus.RECEIVED
        message.attempts = 0
        message.reason = None
        message.processed_at = None
        record(session, "retried", message=message, actor=actor, previous=previous,
               reason=reason)  # fmt: skip
    return process(app, message_id)


def set_aside(app: App, status: MessageStatus = MessageStatus.FAILED) -> list[int]:
    """The ids of messages set aside with `status`, oldest first: what `retry` can take."""
    with app.sessions() as session:
        return list(
            session.scalars(select(Message.id).where(Message.status == status).order_by(Message.id))
        )


def _still_received(app: App, message_ids: list[int]) -> set[int]:
    with app.sessions() as session:
        return set(
            session.scalars(
                select(Message.id).where(
                    Message.id.in_(message_ids), Message.status == MessageStatus.RECEIVED
                )
            )
        )


def _examine_stored(app: App, message_id: int) -> Examination | None:
    """Examine a stored message still waiting; None if it is done already."""
    with app.sessions() as session:
        row = session.execute(
            select(Message.raw, Message.envelope_from, Message.source).where(
                Message.id == message_id, Message.status == MessageStatus.RECEIVED
            )
        ).first()
    if row is None:
        return None
    return _examine_raw(app, row.raw, row.envelope_from, row.source)


def _examine_raw(
    app: App, raw: bytes, envelope_from: str | None = None, source: str | None = None
) -> Examination:
    if len(raw) > app.settings.max_message_bytes:
        return Examination(None, problem=f"too large: {len(raw)} bytes")
    return examine(app, raw, envelope_from, source)


def _handle(app: App, session: Session, message: Message, seen: Examination) -> Outcome:
    # The message row is written last (one UPDATE): the ticket and reply are flushed first
    # for their ids, and a message changed earlier would be written by every flush.
    settings = app.settings
    # parse, screen (never answer a machine), classify (what does the person want?): `seen`
    if seen.problem is not None:
        return _set_aside(session, message, seen.parsed, MessageStatus.QUARANTINED, seen.problem)
    assert seen.parsed is not None and seen.parsed.from_addr is not None
    parsed, understanding, refs = seen.parsed, seen.understanding, _refs(seen.parsed)
    if seen.skip is not None or understanding is None:
        # Linked to its ticket when it is about one (an auto-reply to our reply), for staff.
        ticket, _ = find_thread(session, sender="", subject="", refs=refs)
        reason = seen.skip or "not understood"
        return _set_aside(session, message, parsed, MessageStatus.SCREENED, reason, ticket)

    # thread: a reply joins its ticket; anything else opens one
    verdict = seen.verdict
    decision = plan(understanding, app.classifier.intents, parsed.from_addr, _doubt(app, verdict),
                    opt_outs_unverified=not verdict.failed)  # fmt: skip
    ticket, how = find_thread(session, sender=parsed.from_addr, subject=parsed.subject, refs=refs)
    joined = ticket is not None
    earlier = tuple(ticket.intents or ()) if ticket is not None else None
    automatic = not decision.needs_staff and not joined  # answered in full, nothing to do
    if ticket is None:
        ticket = open_ticket(
            session,
            requester=parsed.from_addr,
            subject=parsed.subject,
            received_at=message.received_at,
            due_months=settings.due_months,
            type=decision.ticket_type,
            status=TicketStatus.DONE if automatic else decision.ticket_status,
            intents=list(decision.intents),
            language=understanding.language,
            reply_to=_differing_reply_to(parsed),
            sender_verified={"pass": True, "fail": False}.get(verdict.result),
            closed=automatic,
        )
        record(session, "ticket_opened", ticket=ticket, message=message, type=ticket.type)
    else:
        if ticket.closed_at is not None:
            _reopen(app, session, ticket, message)
        ticket.updated_at = utcnow()
        ticket.intents = list(dict.fromkeys([*ticket.intents, *decision.intents]))
        record(session, "message_joined", ticket=ticket, message=message, by=how)
    search.index(session, ticket, parsed.new_text)  # found by what they wrote, from now on
    record(session, "classified", ticket=ticket, message=message, **_why(understanding, decision))

    # act: what is safe now, at once; the rest is the ticket's
    if decision.opt_out_scopes:
        optouts.apply(
            session, parsed.from_addr, decision.opt_out_scopes, message=message, ticket=ticket
        )
    if understanding.correction_text and "correction" in decision.intents:
        record(session, "change_requested", ticket=ticket, message=message,
               text=understanding.correction_text)  # fmt: skip
    if automatic:
        record(session, "resolved_automatically", ticket=ticket, message=message)

    # reply: one message that answers everything asked
    reply = queue_answer(app, session, message, parsed, ticket, earlier, understanding, decision,
                         verified=verdict.result == "pass")  # fmt: skip
    if not joined and not automatic:
        notify.ticket_opened(app, session, ticket)  # PRIVBOT_STAFF_NOTIFY=each: staff hear now
    _done(message, parsed, MessageStatus.HANDLED, None, ticket)
    message.auth_result = f"{verdict.result}: {verdict.detail}"[:200]
    return Outcome(message.id, MessageStatus.HANDLED, None, ticket.id, reply)


def _doubt(app: App, verdict: Verdict) -> str | None:
    """Why the sender cannot be trusted to be who From says, or None."""
    if verdict.failed:
        return verdict.detail
    if app.settings.require_verified_sender and verdict.result != "pass":
        return f"not verified ({verdict.detail}) and PRIVBOT_REQUIRE_VERIFIED_SENDER is on"
    return None


def _reopen(app: App, session: Session, ticket: Ticket, message: Message) -> None:
    """A done ticket written to again goes back to the status its type starts in."""
    starts = {i.ticket_type: i.ticket_status for i in app.classifier.intents.intents}
    previous = ticket.status
    ticket.status = starts.get(ticket.type, TicketStatus.OPEN)
    ticket.closed_at = None
    record(session, "reopened", ticket=ticket, message=message, previous=previous)


def _why(understanding: Classification, decision: Plan) -> dict[str, object]:
    """What staff see under "why the bot decided this"."""
    return {
        "intents": list(decision.intents),
        "confidence": round(understanding.confidence, 3),
        "language": understanding.language,
        "low_confidence": understanding.low_confidence,
        "candidates": [[n, round(s, 3)] for n, s in understanding.candidates],
        "matched": [
            {
                "intent": m.intent,
                "phrase": m.phrase,
                "sentence": m.sentence[:300],
                "negated": m.negated,
            }
            for m in understanding.matches[:20]
        ],
        "model": {
            "probabilities": dict(understanding.probabilities),
            "evidence": {k: [list(f) for f in v] for k, v in understanding.evidence},
        },
        "sections": list(understanding.sections),
        "held_back": list(decision.held_back),
        "automatic": not decision.needs_staff,
    }


def _claim(session: Session, message_ids: list[int]) -> list[Message]:
    """The messages still waiting. SKIP LOCKED: another process on PostgreSQL passes over
    messages being handled."""
    if not message_ids:
        return []
    return list(
        session.scalars(
            select(Message)
            .where(Message.id.in_(message_ids), Message.status == MessageStatus.RECEIVED)
            .order_by(Message.id)
            .with_for_update(skip_locked=True)
        )
    )


def _set_aside(
    session: Session,
    message: Message,
    parsed: ParsedMessage | None,
    status: str,
    reason: str,
    ticket: Ticket | None = None,
) -> Outcome:
    record(session, status, ticket=ticket, message=message, reason=reason)
    _done(message, parsed, status, reason, ticket)
    return Outcome(message.id, status, reason, ticket.id if ticket else None)


def _done(
    message: Message,
    parsed: ParsedMessage | None,
    status: str,
    reason: str | None,
    ticket: Ticket | None,
) -> None:
    """What became of the message, on its row: who wrote, about what, where it went."""
    if parsed is not None:
        message.sender = parsed.from_addr
        message.subject = parsed.subject[:2000]
    message.status = status
    message.reason = reason
    message.processed_at = utcnow()
    if ticket is not None:
        message.ticket_id = ticket.id


def _record_failure(app: App, message_id: int, exc: Exception) -> Outcome:
    """Count a failed attempt; after too many the message is set aside as `failed` for staff."""
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    with app.sessions.begin() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise exc
        message.attempts += 1
        message.reason = reason
        if (
            message.attempts >= app.settings.max_attempts
            and message.status == MessageStatus.RECEIVED
        ):
            message.status = MessageStatus.FAILED
            message.processed_at = utcnow()
            record(session, "failed", message=message, reason=reason, attempts=message.attempts)
        return Outcome(message.id, message.status, reason)


def current_outcome(app: App, message_id: int) -> Outcome:
    with app.sessions() as session:
        message = session.get(Message, message_id)
        if message is None:
            raise LookupError(f"no stored message {message_id}")
        reply = session.scalar(
            select(Outgoing.id).where(Outgoing.reply_to_message == message_id).limit(1)
        )
        return Outcome(message.id, message.status, message.reason, message.ticket_id, reply)


def _as_duplicate(outcome: Outcome) -> Outcome:
    return Outcome(
        outcome.message, outcome.status, outcome.reason, outcome.ticket, outcome.reply, True
    )


def _refs(parsed: ParsedMessage) -> tuple[str, ...]:
    ids = (*parsed.references, parsed.in_reply_to)
    return tuple(dict.fromkeys(i for i in ids if i))


def _differing_reply_to(parsed: ParsedMessage) -> str | None:
    if parsed.reply_to and parsed.reply_to != parsed.from_addr:
        return parsed.reply_to
    return None
