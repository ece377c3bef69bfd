"""Readiness: is this process able to do its work? What `/readyz` answers.

Each check gives one word. The answer names no host, version or error (it is served without
authentication); the log says what went wrong.

- database: a trivial query succeeds;
- imap / smtp: the IMAP watcher is logged in, the SMTP receiver is listening; checked only
  where this process runs them (`serve` registers them as `Probes`);
- outbox: no reply has been due for longer than PRIVBOT_OUTBOX_STUCK_SECONDS without being
  sent or retried (a relay that refuses defers replies: that is not "stuck", the sender is
  working; the metrics show the deferrals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from privbot.models import OutboxStatus, Outgoing, outbox_status_is, utcnow

log = logging.getLogger(__name__)

OK, FAIL, STUCK = "ok", "fail", "stuck"


@dataclass
class Probes:
    """Checks of the parts a process runs, added by whoever starts them (serve)."""

    _checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def remove(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def run(self) -> dict[str, str]:
        with self._lock:
            checks = dict(self._checks)
        results = {}
        for name, check in sorted(checks.items()):
            try:
                results[name] = OK if check() else FAIL
            except Exception:
                log.exception("readiness: the %s check failed", name)
                results[name] = FAIL
        return results


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(v == OK for v in self.checks.values())


def readiness(
    sessions: sessionmaker[Session],
    probes: Probes,
    stuck_after: timedelta,
    now: datetime | None = None,
) -> Readiness:
    """Every check, each a word: ok, fail (database, imap, smtp) or stuck (outbox).

    Takes the App's parts (sessions, probes, PRIVBOT_OUTBOX_STUCK_SECONDS), not the App:
    the App holds the probes, so this module cannot import it."""
    now = now or utcnow()
    checks = {"database": OK, "outbox": OK}
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
            due_since = oldest_due(session, now)
    except DBAPIError as exc:
        log.warning("readiness: database unreachable: %s", type(exc.orig).__name__)
        checks["database"] = FAIL
        checks["outbox"] = FAIL  # cannot be known; never "ok"
    else:
        if due_since is not None and now - due_since > stuck_after:
            log.warning("readiness: a reply has been due since %s", due_since.isoformat())
            checks["outbox"] = STUCK
    checks.update(probes.run())
    return Readiness(checks)


def oldest_due(session: Session, now: datetime) -> datetime | None:
    """Since when the longest-waiting due reply has been due: a pending one since its
    next attempt, one whose sender's lease ran out since the lease's end."""
    pending = session.scalar(
        select(func.min(Outgoing.next_attempt_at)).where(
            outbox_status_is(OutboxStatus.PENDING), Outgoing.next_attempt_at <= now
        )
    )
    abandoned = session.scalar(
        select(func.min(Outgoing.lease_until)).where(
            outbox_status_is(OutboxStatus.SENDING), Outgoing.lease_until < now
        )
    )
    moments = [_aware(m) for m in (pending, abandoned) if m is not None]
    return min(moments) if moments else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
