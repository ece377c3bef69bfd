"""Erasure: after a deletion request is done and its hold has passed, the person's data goes;
what was asked, when, what was done and by whom stays. And staff's legal holds, which stop it.

`PRIVBOT_DELETION_HOLD_DAYS` after a deletion ticket was set `done` (kept that long for
disputes and proof), the retention run erases everything privbot holds about the ticket's
requester, found by the address as the outbox counts mailboxes (`address_key`: case,
+tags and Gmail's dots make no other person): the raw mail and subjects of all their
messages (placeholders with the dates and sizes stay), the copies of every reply to them,
their chat texts and client IPs (chat requests never confirmed are deleted), staff
corrections learned from their mail, their names and addresses in tickets, messages,
replies and the audit trail (a pseudonym `erased-<ticket>@erased.invalid` stands for the
address), the words the classifier quoted from their mail. Kept: each ticket's type,
status, intents, dates and assignee, and every audit event with its kind, time and actor;
one `data_erased` event per ticket says what was erased, in counts. Opt-out suppressions
stay exactly as they are, with their history: without them the marketing system would
mail the person again.

A person is erased whole or not at all, in one transaction, and only when nothing of
theirs is in flight: a ticket still open or closed within the hold, mail not yet handled or
a reply not yet sent postpone it to a later run. `tickets.erased_at` on the deletion
ticket makes it happen once. A legal hold, on a ticket (its requester) or on a person,
stops erasure and the ordinary retention of everything of theirs while it is on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from privbot import search
from privbot.app import App
from privbot.audit import BOT, record
from privbot.db import like_escape
from privbot.models import (
    ChatRequest,
    ChatStatus,
    Event,
    Example,
    LegalHold,
    Message,
    MessageStatus,
    OutboxStatus,
    Outgoing,
    Suppression,
    Ticket,
    TicketStatus,
    iso,
    utcnow,
)
from privbot.outbox.queue import DOTLESS, address_key, counted_as, domains_of
from privbot.tickets import parse_ref, ref

DELETION = "deletion"  # the ticket type of intents/deletion.toml
# Serialises erasures and hold placement across PostgreSQL processes, so a hold placed
# while a person is being erased either stops it or comes after it (SQLite has one writer).
_ERASURE_LOCK = 7_311_044
# Opt-outs stay whole, history included: the register must go on suppressing the address.
_KEPT_KINDS = frozenset({"opt_out_applied", "opt_out_withdrawn"})
# Ticketless events that name a person only through a row id in their detail.
_BY_ROW = {"chat_link_queued": "request", "chat_request_confirmed": "request",
           "reply_sent": "outbox", "reply_failed": "outbox", "reply_deferred": "outbox",
           "reply_retried": "outbox",
           "legal_hold_placed": "hold", "legal_hold_released": "hold"}  # fmt: skip
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
NAME_PLACEHOLDER = "[name erased]"
# Stands for someone else's address in an erased thread (a representative writing for them).
SOMEONE = "someone@erased.invalid"


class HoldError(ValueError):
    """A legal hold cannot be placed or released; the message says why."""


class Outcome(StrEnum):
    ERASED = "erased"
    ON_HOLD = "on_hold"
    WAITING = "waiting"  # something of theirs is still in flight
    GONE = "gone"  # done meanwhile by another process, or no longer a done deletion


@dataclass(frozen=True)
class ErasureReport:
    people_erased: int = 0
    erasures_on_hold: int = 0
    erasures_waiting: int = 0


@dataclass(frozen=True)
class Scope:
    """Every row privbot holds about one person (or, united, about several), by table."""

    tickets: frozenset[int] = frozenset()
    messages: frozenset[int] = frozenset()
    replies: frozenset[int] = frozenset()
    chats: frozenset[int] = frozenset()

    def __or__(self, other: Scope) -> Scope:
        return Scope(
            self.tickets | other.tickets,
            self.messages | other.messages,
            self.replies | other.replies,
            self.chats | other.chats,
        )


def pseudonym(request_id: int) -> str:
    """What stands for an erased person's address: one per request, and undeliverable
    (RFC 2606 .invalid) should anything ever try to mail it."""
    return f"erased-{request_id}@erased.invalid"


NOTE_START = "[erased on request "


def erased_note(request_id: int, days: int) -> str:
    return f"{NOTE_START}{ref(request_id)} after its {days}-day hold]"


# -- finding a person's rows ------------------------------------------------------------------


def person_scope(session: Session, key: str) -> Scope:
    """The rows of the person whose normalised address is `key`."""
    tickets = _ids_at(session, Ticket.id, Ticket.requester, key)
    messages = _ids_at(session, Message.id, Message.sender, key)
    if tickets:
        messages |= set(session.scalars(select(Message.id).where(Message.ticket_id.in_(tickets))))
    replies = _ids_at(session, Outgoing.id, Outgoing.to_addr, key)
    if tickets or messages:
        replies |= set(
            session.scalars(
                select(Outgoing.id).where(
                    or_(Outgoing.ticket_id.in_(tickets), Outgoing.reply_to_message.in_(messages))
                )
            )
        )
    chats = _ids_at(session, ChatRequest.id, ChatRequest.address, key)
    if messages:
        chats |= set(
            session.scalars(select(ChatRequest.id).where(ChatRequest.message_id.in_(messages)))
        )
    return Scope(frozenset(tickets), frozenset(messages), frozenset(replies), frozenset(chats))


def _ids_at(
    session: Session, id_column: Any, address_column: InstrumentedAttribute[Any], key: str
) -> set[int]:
    """Ids of rows whose address is `key`'s mailbox, however it was spelled there."""
    local, _, domain = key.rpartition("@")
    # The LIKEs narrow the rows down (every spelling starts so: "ann+x@", and where dots do
    # not count "a.nn@"), and work the same whatever a PostgreSQL collation orders by;
    # address_key then keeps the person's own.
    prefix = local[:1] if domain in DOTLESS.values() else local
    column = func.lower(address_column)
    rows = session.execute(
        select(id_column, address_column).where(
            column.like(f"{like_escape(prefix)}%", escape="\\"),
            or_(*(column.like(f"%@{like_escape(d)}%", escape="\\") for d in domains_of(key))),
        )
    )
    return {row_id for row_id, address in rows if address and address_key(address) == key}


def held_keys(session: Session) -> set[str]:
    """The people under an active legal hold, as normalised addresses."""
    keys: set[str] = set()
    rows = session.execute(
        select(LegalHold.address, Ticket.requester, Ticket.erased_at)
        .outerjoin(Ticket, Ticket.id == LegalHold.ticket_id)
        .where(LegalHold.released_at.is_(None))
    ).all()
    for address, requester, erased_at in rows:
        if address:
            keys.add(address)
        elif requester and erased_at is None:
            keys.add(address_key(requester))
    return keys


def held_scope(session: Session) -> Scope:
    """Every row of every person under a legal hold: ordinary retention leaves them too."""
    scope = Scope()
    for key in sorted(held_keys(session)):
        scope |= person_scope(session, key)
    return scope


# -- erasure ------------------------------------------------------------------------------------


def erase_due(app: App, now: datetime | None = None) -> ErasureReport:
    """Erase the requester of every deletion ticket done longer ago than the hold."""
    now = now or utcnow()
    before = now - timedelta(days=app.settings.deletion_hold_days)
    with app.sessions() as session:
        due = session.scalars(
            select(Ticket.id)
            .where(
                Ticket.type == DELETION,
                Ticket.status == TicketStatus.DONE,
                Ticket.closed_at < before,
                Ticket.erased_at.is_(None),
            )
            .order_by(Ticket.id)
        ).all()
    outcomes = [erase_person(app, ticket_id, now) for ticket_id in due]
    return ErasureReport(
        people_erased=outcomes.count(Outcome.ERASED),
        erasures_on_hold=outcomes.count(Outcome.ON_HOLD),
        erasures_waiting=outcomes.count(Outcome.WAITING),
    )


def erase_person(app: App, request_id: int, now: datetime) -> Outcome:
    """Erase the requester of deletion ticket `request_id`, whole, in one transaction."""
    days = app.settings.deletion_hold_days
    before = now - timedelta(days=days)
    with app.sessions.begin() as session:
        _serialise(session)
        request = session.get(Ticket, request_id, with_for_update=True)
        if (
            request is None
            or request.erased_at is not None
            or request.type != DELETION
            or request.status != TicketStatus.DONE
        ):
            return Outcome.GONE
        key = address_key(request.requester)
        if key in held_keys(session):
            return Outcome.ON_HOLD
        scope = person_scope(session, key)
        if _in_flight(session, scope, before):
            return Outcome.WAITING
        erasure = _Erasure(session, scope, key, request, now, days, app.settings.domain)
        counts = erasure.run()
        others = sorted(scope.tickets - {request.id})
        record(
            session, "data_erased", ticket=request,
            # What was asked, when it was done and what was done now, in counts: no content.
            request=ref(request.id), asked=request.type, intents=list(request.intents or []),
            done_at=iso(request.closed_at), hold_days=days,
            tickets=[ref(t) for t in sorted(scope.tickets)], **counts,
        )  # fmt: skip
        for ticket_id in others:
            record(session, "data_erased", ticket=ticket_id, request=ref(request.id))
    return Outcome.ERASED


def _serialise(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ERASURE_LOCK})


def _in_flight(session: Session, scope: Scope, before: datetime) -> bool:
    """Whether something of the person's is still being worked on: erasing it now would
    leave a ticket without its mail, or put a placeholder through the pipeline or outbox.
    A ticket closed within the hold counts too: every request of theirs gets its days."""
    open_ticket = session.scalar(
        select(Ticket.id).where(
            Ticket.id.in_(_ids(scope.tickets)),
            or_(Ticket.closed_at.is_(None), Ticket.closed_at >= before),
        )
    )
    unhandled = session.scalar(
        select(Message.id).where(
            Message.id.in_(_ids(scope.messages)), Message.status == MessageStatus.RECEIVED
        )
    )
    unsent = session.scalar(
        select(Outgoing.id).where(
            Outgoing.id.in_(_ids(scope.replies)),
            Outgoing.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
        )
    )
    return any(x is not None for x in (open_ticket, unhandled, unsent))


class _Erasure:
    """One person's erasure, in the caller's transaction; `run` returns the counts."""

    def __init__(
        self,
        session: Session,
        scope: Scope,
        key: str,
        request: Ticket,
        now: datetime,
        days: int,
        domain: str,
    ) -> None:
        self.session, self.scope, self.key, self.now, self.domain = (
            session, scope, key, now, domain
        )  # fmt: skip
        self.request_id = request.id
        self.alias = pseudonym(request.id)
        self.note = erased_note(request.id, days)
        self.scrub: Callable[[str], str] = lambda value: value

    def run(self) -> dict[str, int]:
        s = self.session
        messages = s.scalars(select(Message).where(Message.id.in_(_ids(self.scope.messages)))).all()
        # Names first, from the mail itself, so they can be taken out of what staff wrote.
        self.scrub = _scrubber(self.key, _names(self.key, (m.raw for m in messages)), self.alias)
        for m in messages:
            self._message(m)
        replies = s.scalars(select(Outgoing).where(Outgoing.id.in_(_ids(self.scope.replies)))).all()
        for o in replies:
            self._reply(o)
        for t in s.scalars(select(Ticket).where(Ticket.id.in_(_ids(self.scope.tickets)))):
            t.requester, t.subject, t.reply_to = self.alias, self.note, None
            t.redacted_at = t.redacted_at or self.now
            t.erased_at = self.now
        search.forget(s, Ticket.id.in_(_ids(self.scope.tickets)))
        since = self._first_loose(replies)
        chats_deleted, chats_erased = self._chats()
        examples = _rowcount(
            s,
            delete(Example).where(
                or_(
                    Example.ticket_id.in_(_ids(self.scope.tickets)),
                    Example.message_id.in_(_ids(self.scope.messages)),
                )
            ),
        )
        holds = self._holds()
        events = self._events(holds, since)
        kept = len(_ids_at(s, Suppression.id, Suppression.address, self.key))
        return {
            "messages_erased": len(messages),
            "replies_erased": len(replies),
            "chat_requests_erased": chats_erased,
            "chat_requests_deleted": chats_deleted,
            "examples_deleted": examples,
            "events_scrubbed": events,
            "suppressions_kept": kept,
        }

    def _stand_in(self, address: str | None) -> str | None:
        """The pseudonym for the person's address; another address in their thread (a
        representative's) goes too, without being taken for theirs."""
        if address is None:
            return None
        return self.alias if address_key(address) == self.key else SOMEONE

    def _message(self, m: Message) -> None:
        sender = self._stand_in(m.sender or m.envelope_from) or SOMEONE
        m.raw = self._mail({"From": sender, "Date": format_datetime(m.received_at)})
        m.subject = self.note
        m.sender = self._stand_in(m.sender)
        m.envelope_from = self._stand_in(m.envelope_from)
        # No Message-ID: a later mail of theirs must not thread into the erased ticket (it
        # is a new request). The idempotency key, a hash, stays: the same mail delivered
        # again is recognised and not answered twice.
        m.message_id = None
        # The SMTP client's IP, a file's path; a chat request's reference is ours.
        if m.source_ref and not m.source_ref.startswith("chat-request:"):
            m.source_ref = None
        m.reason = _rule_only(m.reason, self.note)
        m.auth_result = self.scrub(m.auth_result) if m.auth_result else m.auth_result
        m.redacted_at = m.redacted_at or self.now

    def _reply(self, o: Outgoing) -> None:
        # Our own Message-ID is replaced too, so a reply to it starts a new ticket.
        o.message_id = f"erased.{o.id}@{self.domain}"
        o.to_addr = self._stand_in(o.to_addr) or SOMEONE
        counted = counted_as(o.to_addr)
        o.to_key, o.to_domain = counted["to_key"], counted["to_domain"]
        o.raw = self._mail({"To": o.to_addr, "Message-ID": f"<{o.message_id}>"})
        o.subject, o.in_reply_to = self.note, None
        o.last_error = self.scrub(o.last_error) if o.last_error else o.last_error
        o.redacted_at = o.redacted_at or self.now

    def _first_loose(self, replies: Iterable[Outgoing]) -> datetime | None:
        """When the person's first ticketless row (chat request, reply, hold) was made."""
        s = self.session
        moments = [o.created_at for o in replies if o.ticket_id is None]
        moments += s.scalars(
            select(ChatRequest.created_at).where(ChatRequest.id.in_(_ids(self.scope.chats)))
        ).all()
        moments += s.scalars(select(LegalHold.placed_at).where(LegalHold.address == self.key)).all()
        return min(moments, default=None)

    def _mail(self, headers: dict[str, str]) -> bytes:
        msg = EmailMessage()
        for name, value in headers.items():
            msg[name] = value
        msg["Subject"] = self.note
        # Were it ever put through the pipeline again (a retry), it is screened, not answered.
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.note + "\n")
        return msg.as_bytes()

    def _chats(self) -> tuple[int, int]:
        """Requests never confirmed are nothing done: deleted (their links stop working).
        Confirmed ones are facts (they became mail): the words, address and IP go."""
        s, ids = self.session, self.scope.chats
        deleted = _rowcount(
            s,
            delete(ChatRequest).where(
                ChatRequest.id.in_(_ids(ids)), ChatRequest.status != ChatStatus.CONFIRMED
            ),
        )
        erased = _rowcount(
            s,
            update(ChatRequest)
            .where(ChatRequest.id.in_(_ids(ids)), ChatRequest.status == ChatStatus.CONFIRMED)
            .values(text=self.note, client=None, address=self.alias),
        )
        return deleted, erased

    def _holds(self) -> set[int]:
        """The person's released holds: their address goes, the hold stays as a fact."""
        rows = self.session.scalars(
            select(LegalHold).where(
                or_(
                    LegalHold.ticket_id.in_(_ids(self.scope.tickets)), LegalHold.address == self.key
                )
            )
        ).all()
        for hold in rows:
            if hold.address is not None:
                hold.address = self.alias
            hold.reason = self.scrub(hold.reason)
        return {h.id for h in rows}

    def _events(self, holds: set[int], since: datetime | None) -> int:
        s, scope = self.session, self.scope
        events = list(
            s.scalars(
                select(Event).where(
                    or_(
                        Event.ticket_id.in_(_ids(scope.tickets)),
                        Event.message_id.in_(_ids(scope.messages)),
                    )
                )
            )
        )
        if since is not None:
            # Ticketless events (chat links, their replies, person holds) name their row in
            # the detail: read those of the kinds that do, from the person's first such row.
            rows_of = {"request": scope.chats, "outbox": scope.replies, "hold": holds}
            loose = s.scalars(
                select(Event).where(
                    Event.kind.in_(list(_BY_ROW)), Event.ticket_id.is_(None), Event.at >= since
                )
            )
            events += [
                e for e in loose
                if e.detail.get(_BY_ROW[e.kind]) in rows_of[_BY_ROW[e.kind]]
            ]  # fmt: skip
        changed = 0
        for e in events:
            if e.kind in _KEPT_KINDS:
                continue
            detail = self._detail(e)
            # An actor is an address (or privbot, chat, cli): only the person's own goes.
            actor = self.alias if "@" in e.actor and address_key(e.actor) == self.key else e.actor
            if detail != e.detail or actor != e.actor:
                s.execute(update(Event).where(Event.id == e.id).values(detail=detail, actor=actor))
                changed += 1
        return changed

    def _detail(self, e: Event) -> dict[str, Any]:
        detail: dict[str, Any] = _deep(dict(e.detail or {}), self.scrub)
        if e.kind == "classified":
            # The sentences it matched and the model's features are the person's words;
            # the intents, phrases of our lexicon and probabilities are what was asked.
            detail["matched"] = [
                {**m, "sentence": ""} if isinstance(m, dict) else m
                for m in detail.get("matched", [])
            ]
            if isinstance(detail.get("model"), dict):
                detail["model"] = {**detail["model"], "evidence": {}}
        elif e.kind == "change_requested":
            detail["text"] = self.note
        if (
            e.actor == BOT
            and e.message_id in self.scope.messages
            and isinstance(detail.get("reason"), str)
        ):
            detail["reason"] = _rule_only(detail["reason"], self.note)
        return detail


def _ids(ids: Iterable[int]) -> list[int]:
    return sorted(ids)


def _rowcount(session: Session, statement: Any) -> int:
    result: Any = session.execute(statement)
    return int(result.rowcount or 0)


def _rule_only(reason: str | None, note: str) -> str | None:
    """A screening reason without what it quoted ("auto-reply: subject '…'")."""
    if not reason or ":" not in reason:
        return reason
    return f"{reason.partition(':')[0]}: {note}"


def _names(key: str, raws: Iterable[bytes]) -> set[str]:
    """The display names the person wrote under, from the From of their mail."""
    names: set[str] = set()
    parser = BytesHeaderParser(policy=default_policy)
    for raw in raws:
        try:
            field = parser.parsebytes(raw).get("from")
            addresses: tuple[Address, ...] = getattr(field, "addresses", ())
        except Exception:  # a malformed From: no name to learn from it
            continue
        for a in addresses:
            name = " ".join(a.display_name.split())
            if len(name) >= 3 and address_key(a.addr_spec) == key:
                names.add(name)
    return names


def _scrubber(key: str, names: set[str], alias: str) -> Callable[[str], str]:
    """Replaces the person's address (any spelling) and names in a text. Names only between
    addresses: "Ann" must not turn a colleague's ann@junocloud.me into something else."""
    words = sorted(names, key=len, reverse=True)
    name_re = (
        re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE)
        if words
        else None
    )

    def prose(value: str) -> str:
        return name_re.sub(NAME_PLACEHOLDER, value) if name_re else value

    def scrub(value: str) -> str:
        out, at = [], 0
        for m in _ADDRESS.finditer(value):
            out.append(prose(value[at : m.start()]))
            out.append(alias if address_key(m.group()) == key else m.group())
            at = m.end()
        out.append(prose(value[at:]))
        return "".join(out)

    return scrub


def _deep(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_deep(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: _deep(v, scrub) for k, v in value.items()}
    return value


def excluding(column: Any, ids: frozenset[int]) -> list[ColumnElement[bool]]:
    """`column NOT IN ids` as a where-clause list, empty when there is nothing to exclude."""
    return [column.not_in(sorted(ids))] if ids else []


# -- legal holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldTarget:
    """What a hold is on: a ticket (its requester) or a person (an address)."""

    ticket_id: int | None = None
    person: str | None = None

    def describe(self) -> str:
        return ref(self.ticket_id) if self.ticket_id is not None else str(self.person)


def target(value: str) -> HoldTarget:
    """A ticket ("JC-12", "12") or a person's address; HoldError if it is neither."""
    ticket_id = parse_ref(value)
    if ticket_id is not None:
        return HoldTarget(ticket_id=ticket_id)
    address = value.strip().lower()
    local, at, domain = address.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in address):
        raise HoldError(f"not a ticket (JC-12) or an e-mail address: {value!r}")
    return HoldTarget(person=address_key(address))


def place_hold(app: App, on: HoldTarget, *, reason: str, actor: str) -> int:
    """Put a ticket's requester or a person on legal hold; recorded. Returns the hold's id."""
    reason = " ".join(reason.split())
    if not reason:
        raise HoldError("give the reason for the hold (--reason)")
    with app.sessions.begin() as session:
        _serialise(session)
        if on.ticket_id is not None:
            ticket = session.get(Ticket, on.ticket_id)
            if ticket is None:
                raise HoldError(f"no ticket {ref(on.ticket_id)}")
            if ticket.erased_at is not None:
                raise HoldError(
                    f"{ref(on.ticket_id)}'s requester was erased on {ticket.erased_at:%Y-%m-%d}:"
                    " nothing is left to hold"
                )
        active = session.scalar(select(LegalHold.id).where(*_on(on), _active()))
        if active is not None:
            raise HoldError(f"{on.describe()} is already on hold (hold #{active})")
        hold = LegalHold(
            ticket_id=on.ticket_id, address=on.person, reason=reason[:2000], placed_by=actor,
            placed_at=utcnow(),
        )  # fmt: skip
        session.add(hold)
        session.flush()
        # The hold's row names the person; the event only points to it (and to the ticket).
        on_what = "ticket" if on.ticket_id is not None else "person"
        record(session, "legal_hold_placed", ticket=on.ticket_id, actor=actor, hold=hold.id,
               on=on_what, reason=hold.reason)  # fmt: skip
        return hold.id


def release_hold(app: App, on: HoldTarget, *, reason: str, actor: str) -> int:
    """Release the active hold on a ticket or person; recorded. Returns the hold's id."""
    reason = " ".join(reason.split())
    if not reason:
        raise HoldError("give the reason for the release (--reason)")
    with app.sessions.begin() as session:
        _serialise(session)
        hold = session.scalar(select(LegalHold).where(*_on(on), _active()).with_for_update())
        if hold is None:
            raise HoldError(f"{on.describe()} is not on hold")
        hold.released_at, hold.released_by = utcnow(), actor
        record(session, "legal_hold_released", ticket=hold.ticket_id, actor=actor, hold=hold.id,
               reason=reason[:2000])  # fmt: skip
        return hold.id


def list_holds(app: App, *, released: bool = False) -> list[dict[str, Any]]:
    """Holds, newest first: the active ones, or all."""
    with app.sessions() as session:
        rows = session.scalars(
            select(LegalHold)
            .where(*([] if released else [_active()]))
            .order_by(LegalHold.id.desc())
        ).all()
        return [
            {
                "id": h.id,
                "on": ref(h.ticket_id) if h.ticket_id is not None else h.address,
                "reason": h.reason,
                "placed_by": h.placed_by,
                "placed_at": iso(h.placed_at),
                "released_at": iso(h.released_at),
                "released_by": h.released_by,
            }
            for h in rows
        ]


def _on(on: HoldTarget) -> list[ColumnElement[bool]]:
    if on.ticket_id is not None:
        return [LegalHold.ticket_id == on.ticket_id]
    return [LegalHold.address == on.person]


def _active() -> ColumnElement[bool]:
    return LegalHold.released_at.is_(None)
