"""The daily staff mail: once a UTC day at PRIVBOT_STAFF_DAILY_HOUR, the open tickets overdue
and due within 5 days, each coloured by the days it has left, and, with
PRIVBOT_STAFF_NOTIFY=digest, the new tickets that wait for staff since the last one.

Run by `privbot serve` (a worker that looks every minute) and by `privbot staff digest`
(from cron, or `--now` before the hour). Exactly once a day however many processes run it:
a run claims its day with a `staff_daily` audit event, in the same transaction that queues
its mails, under a lock (PostgreSQL: an advisory transaction lock; SQLite: the write lock
BEGIN IMMEDIATE takes), so a second run that day finds the claim and sends nothing. A
crash before the commit leaves neither claim nor mails, and the next look does it all.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from privbot.app import App
from privbot.audit import record
from privbot.models import Event, Ticket, iso, utcnow
from privbot.outbox.queue import address_key
from privbot.staff import notify
from privbot.staff.views import days_left

log = logging.getLogger(__name__)

DAILY = "staff_daily"  # the audit event that claims a day (and says what was sent)
DUE_SOON_DAYS = 5  # "due within 5 days": 0 to 5 days left
LIST_LIMIT = 100  # tickets a list shows; the mail gives the whole count and a queue link
LOOK_EVERY = 60.0  # seconds between the serve worker's looks
MAX_DIGEST_DAYS = 7  # a digest after a long pause covers at most this far back
# A digest also looks this far before the last one, leaving out the tickets it listed: a
# ticket opened (created_at) just before that run but committed after it read is not lost.
SETTLE = timedelta(minutes=10)
_DAILY_LOCK = 7_311_045  # any constant, the same in every privbot process

# The colour of the days left, as Fides (ethyca/fides, the privacy-request admin UI) colours
# its "days left" tag, clients/admin-ui/src/features/common/DaysLeftTag.tsx: `daysLeft >= 10`
# green ("success"), `daysLeft < 10 && daysLeft > 4` amber ("warning"), `daysLeft < 5` red
# ("error"). Fides shows no tag at 0 (a falsy number) and, for overdue, red by the same `< 5`;
# here due today is red too. (Its newer dashboard colours by the share of the time frame
# left instead, DaysLeft.tsx: 75 % and 25 %; the tag's fixed days suit a 5-day list.)
GREEN_FROM = 10
AMBER_FROM = 5


def colour(days: int) -> str:
    """green, amber or red for a ticket with `days` left (negative: overdue)."""
    if days >= GREEN_FROM:
        return "green"
    if days >= AMBER_FROM:
        return "amber"
    return "red"


# What a run did, in `DailyRun.outcome`.
SENT = "sent"  # claimed the day (mails queued, or none needed)
ALREADY = "already"  # the day was claimed before
EARLY = "early"  # before the hour
OFF = "off"  # PRIVBOT_STAFF_NOTIFY=off


@dataclass(frozen=True)
class DailyRun:
    day: str  # the UTC day, ISO
    outcome: str
    claimed_at: datetime | None = None  # ALREADY: when the day was claimed
    to: tuple[str, ...] = ()
    new: int | None = None  # None: not a digest
    overdue: int = 0
    due_soon: int = 0
    outbox: tuple[int, ...] = field(default=())

    def describe(self) -> str:
        if self.outcome == OFF:
            return "PRIVBOT_STAFF_NOTIFY is off: no staff mail"
        if self.outcome == EARLY:
            return f"not yet: the daily staff mail of {self.day} goes at PRIVBOT_STAFF_DAILY_HOUR"
        if self.outcome == ALREADY:
            at = self.claimed_at.strftime("%H:%M UTC") if self.claimed_at else "earlier"
            return f"the daily staff mail of {self.day} was already sent (at {at})"
        counts = f"{self.overdue} overdue, {self.due_soon} due within {DUE_SOON_DAYS} days"
        if self.new is not None:
            counts += f", {self.new} new"
        mails, people = len(self.outbox), len(self.to)
        return (
            f"daily staff mail of {self.day}: {mails} mail{'' if mails == 1 else 's'} queued "
            f"for {people} recipient{'' if people == 1 else 's'} ({counts})"
        )


def run(app: App, now: datetime | None = None, *, before_hour: bool = False) -> DailyRun:
    """The day's staff mail, if it is time and no process sent it yet today. `before_hour`:
    do not wait for PRIVBOT_STAFF_DAILY_HOUR (`privbot staff digest --now`)."""
    settings = app.settings
    now = now or utcnow()
    day = now.date().isoformat()
    if settings.staff_notify == "off" or not settings.public_url:
        return DailyRun(day, OFF)
    if not before_hour and now.hour < settings.staff_daily_hour:
        return DailyRun(day, EARLY)
    desk = notify.check(app)
    with app.sessions.begin() as session:
        _lock(session)
        last = session.scalars(
            select(Event).where(Event.kind == DAILY).order_by(Event.id.desc()).limit(1)
        ).first()
        if last is not None and str((last.detail or {}).get("day", "")) >= day:
            return DailyRun(day, ALREADY, claimed_at=last.at)
        digest = settings.staff_notify == "digest"
        since = _since(last, now)
        listed = _listed(last) if digest else ()
        lists = _Lists.read(session, now, since - SETTLE if digest else None, listed)
        to = notify.recipients(session, settings)
        ids: list[int] = []
        for address in to:
            mine = lists.without(address)
            if not mine.anything:
                continue  # nothing to say to them today
            mail = desk.render(
                "daily.txt.j2", **mine.context(settings.public_url or "", now, since),
                **notify.mail_context(settings),
            )  # fmt: skip
            ids.append(notify.queue_staff_mail(session, settings, address, mail))
        result = DailyRun(
            day, SENT, to=tuple(to), new=lists.new_total if digest else None,
            overdue=lists.overdue_total, due_soon=lists.soon_total, outbox=tuple(ids),
        )  # fmt: skip
        # The claim (its `day`), and what was sent: `as_of` is where the next digest starts.
        record(session, "staff_daily", day=day, as_of=iso(now),
               since=iso(since) if digest else None, mode=settings.staff_notify, to=list(to),
               new=result.new, overdue=result.overdue, due_soon=result.due_soon,
               due_within_days=DUE_SOON_DAYS, outbox=ids,
               listed=[t.id for t in lists.new or ()])  # fmt: skip
    if ids:
        app.outbox_ready.set()
    return result


def run_daily(app: App, stop: threading.Event, every: float = LOOK_EVERY) -> None:
    """`privbot serve`'s worker: looks every minute whether the day's staff mail is due."""
    if app.settings.staff_notify == "off":
        return
    while not stop.is_set():
        try:
            done = run(app)
            if done.outcome == SENT:
                log.info("staff: %s", done.describe())
        except Exception:
            log.exception("staff: the daily staff mail failed; trying again shortly")
        stop.wait(every)


def _lock(session: Session) -> None:
    # SQLite: this transaction began with BEGIN IMMEDIATE, which already holds the one write
    # lock of every process on the file. PostgreSQL: one advisory lock for the day's claim.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DAILY_LOCK})


def _listed(last: Event | None) -> tuple[int, ...]:
    """The tickets the last digest listed as new."""
    ids = (last.detail or {}).get("listed") if last is not None else None
    return tuple(i for i in ids if isinstance(i, int)) if isinstance(ids, list) else ()


def _since(last: Event | None, now: datetime) -> datetime:
    """Where the digest starts: the last daily run (none missed, none twice), at most
    MAX_DIGEST_DAYS back; a day back for the first."""
    floor = now - timedelta(days=MAX_DIGEST_DAYS)
    previous = (last.detail or {}).get("as_of") if last is not None else None
    if not isinstance(previous, str):
        return now - timedelta(days=1)
    try:
        return max(datetime.fromisoformat(previous), floor)
    except ValueError:
        return now - timedelta(days=1)


@dataclass(frozen=True)
class _Lists:
    """The day's tickets: each list cut at LIST_LIMIT, with its whole count."""

    new: tuple[Ticket, ...] | None
    new_total: int
    overdue: tuple[Ticket, ...]
    overdue_total: int
    soon: tuple[Ticket, ...]
    soon_total: int

    @classmethod
    def read(
        cls, session: Session, now: datetime, since: datetime | None, listed: tuple[int, ...] = ()
    ) -> _Lists:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        horizon = start + timedelta(days=DUE_SOON_DAYS + 1)  # due before: 5 days left at most
        is_open = Ticket.closed_at.is_(None)  # the partial index ix_tickets_open_due
        overdue = (is_open, Ticket.due_at < start)
        soon = (is_open, Ticket.due_at >= start, Ticket.due_at < horizon)
        new = (
            (is_open, Ticket.created_at >= since, Ticket.created_at <= now,
             Ticket.id.not_in(listed))
            if since else None
        )  # fmt: skip
        by_due = (Ticket.due_at, Ticket.id)

        def rows(where: Any, order: Any) -> tuple[Ticket, ...]:
            return tuple(session.scalars(select(Ticket).where(*where).order_by(*order)
                                         .limit(LIST_LIMIT)))  # fmt: skip

        def count(where: Any) -> int:
            return session.scalar(select(func.count()).select_from(Ticket).where(*where)) or 0

        return cls(
            new=rows(new, (Ticket.id,)) if new else None,
            new_total=count(new) if new else 0,
            overdue=rows(overdue, by_due), overdue_total=count(overdue),
            soon=rows(soon, by_due), soon_total=count(soon),
        )  # fmt: skip

    def without(self, address: str) -> _Lists:
        """The lists for one recipient: no ticket of which they are the requester (a staff
        member who wrote to the privacy mailbox themselves gets no staff mail about it)."""
        key = address_key(address)

        def keep(tickets: tuple[Ticket, ...]) -> tuple[Ticket, ...]:
            return tuple(t for t in tickets if address_key(t.requester) != key)

        new = keep(self.new) if self.new is not None else None
        overdue, soon = keep(self.overdue), keep(self.soon)
        gone_new = len(self.new or ()) - len(new or ())
        return _Lists(
            new, self.new_total - gone_new,
            overdue, self.overdue_total - (len(self.overdue) - len(overdue)),
            soon, self.soon_total - (len(self.soon) - len(soon)),
        )  # fmt: skip

    @property
    def anything(self) -> bool:
        return bool(self.new_total or self.overdue_total or self.soon_total)

    def context(self, public_url: str, now: datetime, since: datetime) -> dict[str, Any]:
        def listed(tickets: tuple[Ticket, ...]) -> list[notify.TicketFacts]:
            out = []
            for t in tickets:
                left = days_left(t.due_at, now)
                hue = colour(left) if left is not None else ""
                out.append(notify.facts(t, public_url, days_left=left, colour=hue))
            return out

        return {
            "day": now.date().isoformat(),
            "mode": "digest" if self.new is not None else "each",
            "since": f"{since:%Y-%m-%d %H:%M} UTC",
            "new": listed(self.new) if self.new is not None else None,
            "new_total": self.new_total,
            "overdue": listed(self.overdue),
            "overdue_total": self.overdue_total,
            "soon": listed(self.soon),
            "soon_total": self.soon_total,
            "soon_days": DUE_SOON_DAYS,
        }
