"""Metrics for Prometheus (prometheus-client): one registry per `App`, none per module.

Two kinds, chosen by who can know the figure:

- What the database records is counted from it at each scrape (`DatabaseCollector`):
  messages by outcome and reason (from the audit trail, which is never deleted, so these
  counters survive restarts and rotations), replies sent, retried and failed, the outbox's
  depth and oldest age, tickets open, overdue and due soon. They are the site's figures:
  every serve process on one database reports the same ones (do not sum them across
  processes), and none is lost when a process dies.
- What only a process sees is kept in its memory: classification latency (a histogram) and
  IMAP reconnects; these start from zero with the process, as Prometheus expects.

Label values come from small fixed sets (`REASONS`, `FAILURES`), never from mail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from privbot.models import Event, Message, OutboxStatus, Outgoing, Ticket, utcnow

log = logging.getLogger(__name__)

# The reason a message was set aside starts with its kind ("bounce: From mailer-daemon@…");
# the kind is the label, the rest (addresses, subjects) never is. Anything else is "other".
REASONS = {
    "own mail": "own_mail",
    "feedback report": "feedback_report",
    "bounce": "bounce",
    "auto-reply": "auto_reply",
    "bulk mail": "bulk",
    "mailing list": "mailing_list",
    "challenge-response": "challenge_response",
    "no-reply sender": "no_reply_sender",
    "spam": "spam",
    "machine wording": "machine_wording",
    "not understood": "not_understood",
    "too large": "too_large",
    "too big to read whole": "too_big_to_read",
    "cannot be parsed": "unparseable",
    "no sender address to answer": "no_sender",
}
# A failed message's reason is the exception ("UndefinedError: …"): classed by its type.
FAILURES = {
    "template": ("UndefinedError", "TemplateError", "TemplateSyntaxError", "RepliesError"),
    "database": ("OperationalError", "IntegrityError", "DataError", "ProgrammingError",
                 "InternalError", "DatabaseError"),
}  # fmt: skip
# How much of a reason the scrape reads: enough for the longest kind above. Grouping by it
# keeps the groups few whatever the addresses and subjects after the kind.
REASON_PREFIX = 32
# Audit events that count messages and replies, and the outcome each counts as.
MESSAGE_EVENTS = {
    "classified": "handled",  # once per handled message (pipeline._handle)
    "screened": "screened",
    "quarantined": "quarantined",
    "failed": "failed",
}
REPLY_EVENTS = {"reply_sent": "sent", "reply_deferred": "retried", "reply_failed": "failed"}
# "Due soon" as the staff queue's week view counts it: due from today on, within 7 days.
DUE_SOON = timedelta(days=7)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def reason_class(outcome: str, reason: str | None) -> str:
    """The bounded label for why a message was set aside."""
    if outcome == "failed":
        kind = (reason or "").partition(":")[0].strip()
        return next((c for c, types in FAILURES.items() if kind in types), "error")
    kind = (reason or "").partition(":")[0].strip().lower()
    return REASONS.get(kind, "other")


@dataclass(frozen=True)
class Metrics:
    """The App's registry and the figures kept in this process's memory."""

    registry: CollectorRegistry
    classify_seconds: Histogram
    imap_reconnects: Counter


def new_metrics(sessions: sessionmaker[Session] | None = None) -> Metrics:
    """A registry of its own; with `sessions`, the database's figures are in it too."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)  # memory, CPU, open files of this process
    PlatformCollector(registry=registry)
    metrics = Metrics(
        registry=registry,
        classify_seconds=Histogram(
            "privbot_classification_seconds",
            "Time to classify one text (mail, chat), in this process",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        imap_reconnects=Counter(
            "privbot_imap_reconnects",
            "IMAP connections lost or refused and tried again, in this process",
            registry=registry,
        ),
    )
    if sessions is not None:
        registry.register(DatabaseCollector(sessions))
    return metrics


class DatabaseCollector(Collector):
    """The figures the database holds, read at each scrape (a few indexed counts)."""

    def __init__(self, sessions: sessionmaker[Session], now: Callable[[], datetime] = utcnow):
        self.sessions = sessions
        self.now = now

    def describe(self) -> list[Metric]:
        return []  # not known before a scrape; auto_describe must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "privbot_database_up", "1 if this scrape could read the database, else 0"
        )
        started = time.monotonic()
        try:
            with self.sessions() as session:
                families = list(self._families(session))
        except DBAPIError as exc:
            log.warning("metrics: cannot read the database: %s", type(exc.orig).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily(
            "privbot_database_scrape_seconds", "Time this scrape spent reading the database"
        )
        took.add_metric([], time.monotonic() - started)
        yield took

    def _families(self, session: Session) -> Iterator[Metric]:
        now = self.now()
        yield from self._messages(session)
        yield from self._replies(session)
        yield from self._outbox(session, now)
        yield from self._tickets(session, now)

    def _messages(self, session: Session) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "privbot_messages",
            "Messages received (stored) and what became of them, by reason class",
            labels=["outcome", "reason"],
        )
        received = session.scalar(select(func.count(Message.id))) or 0
        handled = session.scalar(select(func.count(Event.id)).where(Event.kind == "classified"))
        total.add_metric(["received", "none"], received)
        total.add_metric(["handled", "none"], handled or 0)
        reasons: dict[tuple[str, str], int] = {}
        prefix = func.substr(Event.detail["reason"].as_string(), 1, REASON_PREFIX)
        set_aside = [k for k, v in MESSAGE_EVENTS.items() if v != "handled"]
        rows = session.execute(
            select(Event.kind, prefix, func.count(Event.id))
            .where(Event.kind.in_(set_aside))
            .group_by(Event.kind, prefix)
        )
        for kind, reason, count in rows:
            outcome = MESSAGE_EVENTS[kind]
            key = (outcome, reason_class(outcome, reason))
            reasons[key] = reasons.get(key, 0) + count
        for (outcome, reason), count in sorted(reasons.items()):
            total.add_metric([outcome, reason], count)
        yield total
        now = GaugeMetricFamily(
            "privbot_messages_by_status",
            "Messages by their status now (received: waiting; failed: set aside for staff)",
            labels=["status"],
        )
        by_status = dict(
            session.execute(
                select(Message.status, func.count(Message.id)).group_by(Message.status)
            ).all()
        )
        for status in ("received", "handled", "screened", "quarantined", "failed"):
            now.add_metric([status], by_status.get(status, 0))
        yield now

    def _replies(self, session: Session) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "privbot_replies",
            "Replies sent, deferred to be retried after a temporary failure, and failed",
            labels=["outcome"],
        )
        counts = dict(
            session.execute(
                select(Event.kind, func.count(Event.id))
                .where(Event.kind.in_(REPLY_EVENTS))
                .group_by(Event.kind)
            ).all()
        )
        for kind, outcome in REPLY_EVENTS.items():
            family.add_metric([outcome], counts.get(kind, 0))
        yield family

    def _outbox(self, session: Session, now: datetime) -> Iterator[Metric]:
        waiting = Outgoing.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
        depth, oldest = session.execute(
            select(func.count(Outgoing.id), func.min(Outgoing.created_at)).where(waiting)
        ).one()
        yield GaugeMetricFamily(
            "privbot_outbox_depth", "Replies waiting to be sent (pending or being sent)", depth
        )
        age = (now - _aware(oldest)).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "privbot_outbox_oldest_age_seconds",
            "Age of the oldest reply waiting to be sent (0 when none waits)",
            max(age, 0.0),
        )

    def _tickets(self, session: Session, now: datetime) -> Iterator[Metric]:
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        open_ = Ticket.closed_at.is_(None)
        count = func.count(Ticket.id)
        opened = session.scalar(select(count).where(open_)) or 0
        overdue = session.scalar(select(count).where(open_, Ticket.due_at < today)) or 0
        soon = session.scalar(
            select(count).where(open_, Ticket.due_at >= today, Ticket.due_at < today + DUE_SOON)
        )
        yield GaugeMetricFamily("privbot_tickets_open", "Tickets not closed", opened)
        yield GaugeMetricFamily(
            "privbot_tickets_overdue", "Open tickets due before today (UTC)", overdue
        )
        yield GaugeMetricFamily(
            "privbot_tickets_due_soon", "Open tickets due from today within 7 days", soon or 0
        )


def _aware(moment: datetime) -> datetime:
    # min() keeps the column's type (aware UTC); a naive value is UTC all the same.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class MetricsListener:
    """prometheus-client's own HTTP server on PRIVBOT_METRICS_LISTEN, for this registry."""

    registry: CollectorRegistry
    host: str
    port: int

    def start(self) -> Callable[[], None]:
        server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = server.server_port

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
