"""The outbox: replies leave from a table, so none is lost and none goes twice.

A row is claimed with a lease (status `sending`), sent, then marked `sent`. Temporary
failures (4xx, connection errors, a relay that refuses us before any mail) go back to
`pending` with backoff until PRIVBOT_SEND_GIVE_UP_HOURS after the reply was queued, then
become `failed` with the last error; permanent ones (5xx to a mail) become `failed` at once.
Failed replies are visible to staff. On SQLite each 250 is first noted in the sent log
(`privbot/sentlog.py`) and the batch is marked in one transaction after; a sender that died before
marking is recognised from its notes when its lease runs out, and nothing is sent again.
Only a death between the relay taking the mail and the note (microseconds; on PostgreSQL,
until the mark's commit) sends a reply twice, with the SAME Message-ID, so the copy is
recognisably one message: SMTP has no two-phase commit.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import ColumnElement, Update, exists, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from privbot.app import App
from privbot.audit import record
from privbot.config import SmtpSettings
from privbot.crashpoints import crash_point
from privbot.db import durably
from privbot.mail.oauth import LoginRefused, TokenError, TokenSource, smtp_login
from privbot.models import OutboxStatus, Outgoing, outbox_status_is, utcnow
from privbot.sentlog import SentLog

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 3600.0
# Replies claimed per transaction; each is still marked on its own right after it is sent.
BATCH = 10
LEASE_MARGIN = timedelta(seconds=35)  # longer than one send may take (30 s timeout)
_BARE_LF = re.compile(rb"(?<!\r)\n")


class TemporaryFailure(Exception):
    """Try again later: the relay is away or said 4xx."""


class PermanentFailure(Exception):
    """The relay refused for good (5xx): staff must look."""


@dataclass
class Mailer:
    """One SMTP connection to the relay, opened on demand and reused."""

    settings: SmtpSettings
    timeout: float = 30.0
    _conn: smtplib.SMTP | None = None
    # Access tokens for a relay that takes OAuth (a user and no password in PRIVBOT_SMTP_URL).
    tokens: TokenSource | None = None

    def __post_init__(self) -> None:
        if self.settings.user and self.settings.password is None and self.tokens is None:
            raise ValueError("PRIVBOT_SMTP_URL has no password, and OAuth is not configured")

    def send(self, sender: str, recipient: str, raw: bytes) -> None:
        """Hand one mail to the relay. Whatever goes wrong is this mail's own failure, raised
        as TemporaryFailure or PermanentFailure and nothing else: one odd reply must never
        stop the sender, nor strand the replies claimed with it."""
        try:
            conn = self._connect()
        except smtplib.SMTPResponseException as exc:
            # Refused before any mail (greeting, EHLO, STARTTLS, AUTH): the relay's state or
            # our credentials, the same for every reply. Retried, never this reply's failure:
            # a 554 greeting or a wrong password must not fail the whole outbox at once.
            self.close()
            detail = _response(exc.smtp_code, exc.smtp_error)
            raise TemporaryFailure(f"relay refused the connection: {detail}") from exc
        except (TokenError, LoginRefused) as exc:
            # No access token, or the relay refused a fresh one: the same for every reply.
            self.close()
            raise TemporaryFailure(str(exc)) from exc
        except Exception as exc:
            # Any other fault here (a host name IDNA cannot encode, too) is the connection's,
            # not this reply's: retried, and the rest wait their turn.
            self.close()
            raise TemporaryFailure(f"relay unreachable: {exc}") from exc
        try:
            # smtplib sends bytes as they are: bare LFs would reach the relay as one long line.
            raw = _BARE_LF.sub(b"\r\n", raw)
            options = self._mail_options(conn, sender, recipient, raw)
            refused = conn.sendmail(sender, [recipient], raw, mail_options=options)
        except PermanentFailure:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(recipient, (550, b"refused"))
            self._raise_for(code, text)
        except smtplib.SMTPResponseException as exc:
            self.close()
            self._raise_for(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TemporaryFailure(f"relay unreachable: {exc}") from exc
        except Exception as exc:
            # Not the relay's doing: smtplib cannot send this reply as it is (a line break in
            # its address, bytes that are not bytes); it would fail the same way every time.
            # The transaction may be half open (MAIL accepted): the next reply starts afresh.
            self.close()
            raise PermanentFailure(f"cannot be sent: {type(exc).__name__}: {exc}") from exc
        if refused:  # pragma: no cover - one recipient only: refusal raises above
            code, text = refused[recipient]
            self._raise_for(code, text)

    def connect(self) -> smtplib.SMTP:
        """Open the connection as a send would (TLS, EHLO, AUTH), sending nothing: what
        `privbot config check` tries. Errors are smtplib's own."""
        return self._connect()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        s = self.settings
        context = ssl.create_default_context() if s.ssl or s.starttls else None
        if s.ssl:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=self.timeout, context=context
            )
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
            if s.starttls:
                conn.starttls(context=context)
        try:
            conn.ehlo_or_helo_if_needed()  # here, so a refused EHLO is the connection's failure
            if s.user and s.password is None:
                assert self.tokens is not None
                smtp_login(conn, s.user, self.tokens)
            elif s.user:
                conn.login(s.user, s.password or "")
        except BaseException:
            conn.close()  # a refused login must not leave the connection open
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _mail_options(conn: smtplib.SMTP, sender: str, recipient: str, raw: bytes) -> list[str]:
        """SMTPUTF8 for a mail with a non-ASCII address or UTF-8 headers (RFC 6531/6532);
        PermanentFailure when the relay does not offer it: no other relay is tried."""
        if sender.isascii() and recipient.isascii() and raw.isascii():
            return []
        conn.ehlo_or_helo_if_needed()
        if not conn.has_extn("smtputf8"):
            needed_for = next((a for a in (recipient, sender) if not a.isascii()), None)
            reason = f"needed for {needed_for}" if needed_for else "needed for its UTF-8 headers"
            raise PermanentFailure(f"the relay does not offer SMTPUTF8, {reason}")
        return ["SMTPUTF8"]

    @staticmethod
    def _raise_for(code: int, text: bytes | str) -> NoReturn:
        detail = _response(code, text)
        if 500 <= code < 600:
            raise PermanentFailure(detail)
        raise TemporaryFailure(detail)


def _response(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {message}".strip()


def backoff(attempts: int, base: float) -> float:
    """Seconds to wait after the n-th failed attempt: doubling, capped at an hour."""
    return min(base * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)


def claim_due(app: App, limit: int) -> list[Outgoing]:
    """Take up to `limit` due replies under one lease, in one transaction."""
    now = utcnow()
    with app.sessions.begin() as session:
        # On disk before anything is sent: and with it everything the pipeline committed
        # before, so no power cut can lose a ticket whose reply already went out.
        durably(session)
        if app.sent_log is not None and app.sent_log.has_notes():
            _recover_noted(session, app.sent_log, now)
        # Two lookups, each in its partial index of unsent replies, in the index's order:
        # one OR over a bound status read the whole outbox, every reply ever kept (60 ms a
        # claim at 100,000 replies; issue 16).
        rows = _lock_due(  # a dead sender's first: their lease ran out
            session, outbox_status_is(OutboxStatus.SENDING), Outgoing.lease_until < now,
            Outgoing.lease_until, limit,
        )  # fmt: skip
        if len(rows) < limit:
            rows += _lock_due(
                session, outbox_status_is(OutboxStatus.PENDING), Outgoing.next_attempt_at <= now,
                Outgoing.next_attempt_at, limit - len(rows),
            )  # fmt: skip
        lease = now + timedelta(seconds=app.settings.send_lease_seconds)
        for row in rows:
            row.status = OutboxStatus.SENDING
            row.lease_until = lease
            row.attempts += 1
        return rows


def _lock_due(
    session: Session,
    status: ColumnElement[bool],
    due: ColumnElement[bool],
    order: InstrumentedAttribute[Any],
    limit: int,
) -> list[Outgoing]:
    return list(
        session.scalars(
            select(Outgoing)
            .where(status, due)
            .order_by(order, Outgoing.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def send_due(app: App, mailer: Mailer, limit: int = BATCH) -> int:
    """Send up to `limit` due replies over one connection; returns how many were taken."""
    rows = claim_due(app, limit)
    margin = min(LEASE_MARGIN, timedelta(seconds=app.settings.send_lease_seconds / 2))
    accepted: list[Outgoing] = []  # noted in the sent log; marked together at the end
    try:
        for index, row in enumerate(rows):
            # A lease that ran out while earlier ones were sent is no longer ours to use.
            if row.lease_until is None or row.lease_until - margin < utcnow():
                _release(app, rows[index:])
                break
            if not _send_row(app, mailer, row, accepted):
                _release(app, rows[index + 1 :])  # the relay is away: the rest wait their turn
                break
    finally:
        _finish(app, accepted, OutboxStatus.SENT, None)
    return len(rows)


def _send_row(app: App, mailer: Mailer, row: Outgoing, accepted: list[Outgoing]) -> bool:
    """Send one claimed reply and record the outcome; False if the relay failed for now."""
    try:
        mailer.send(envelope_sender(app, row), row.to_addr, row.raw)
    except PermanentFailure as exc:
        log.warning("outbox: reply %s failed: %s", row.id, exc, extra=_ids(row))
        _finish(app, [row], OutboxStatus.FAILED, str(exc))
        return True  # this recipient is refused; the relay takes the others
    except TemporaryFailure as exc:
        _retry_or_give_up(app, row, str(exc))
        return False
    noted = _note_sent(app.sent_log, row)
    crash_point(app.settings, "after_send")  # the relay (and the log, if noted) has it; the db not
    if noted:
        accepted.append(row)
    else:
        _finish(app, [row], OutboxStatus.SENT, None)
    return True


def _retry_or_give_up(app: App, row: Outgoing, error: str) -> None:
    """After a temporary failure: back to `pending` with backoff, or, once the reply has
    waited PRIVBOT_SEND_GIVE_UP_HOURS since it was queued, `failed` with the last error."""
    now = utcnow()
    waited = now - row.created_at
    left = timedelta(hours=app.settings.send_give_up_hours) - waited
    if left <= timedelta(0):
        reason = f"gave up after {_duration(waited)} and {row.attempts} attempts: {error}"
        log.warning("outbox: reply %s failed: %s", row.id, reason, extra=_ids(row))
        _finish(app, [row], OutboxStatus.FAILED, reason)
        return
    # The last try falls on the limit itself: a backoff of up to an hour must not leave a
    # reply pending (and its staff unaware) for that long past it.
    delay = min(backoff(row.attempts, app.settings.retry_seconds), left.total_seconds())
    log.info("outbox: reply %s deferred (attempt %d): %s", row.id, row.attempts, error,
             extra=_ids(row))  # fmt: skip
    _finish(app, [row], OutboxStatus.PENDING, error, retry_in=delay)


def _ids(row: Outgoing) -> dict[str, int | None]:
    """The ids a JSON log line carries as fields (ops/logs.py)."""
    return {"outbox_id": row.id, "ticket_id": row.ticket_id}


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def envelope_sender(app: App, row: Outgoing) -> str:
    """MAIL FROM for a reply: the null sender `<>` for automatic replies (RFC 3834 3.3, so
    that a bounce of one is never sent, nor answered), the support address for the rest."""
    return "" if row.kind == "auto" else app.settings.address


def _note_sent(notes: SentLog | None, row: Outgoing) -> bool:
    """Note an accepted reply in the sent log; False where there is none or it failed."""
    if notes is None or row.lease_until is None:
        return False
    try:
        notes.note(row.id, row.lease_until)
    except OSError as exc:
        log.warning(
            "outbox: cannot note reply %s in %s (%s); marking it now", row.id, notes.path, exc
        )
        return False
    return True


def _recover_noted(session: Session, notes: SentLog, now: datetime) -> None:
    """Replies a dead sender had noted as accepted but never marked: marked sent now, not
    sent again. Then, if no reply is being sent anywhere, the notes are forgotten."""
    dead = session.scalars(
        select(Outgoing).where(outbox_status_is(OutboxStatus.SENDING), Outgoing.lease_until < now)
    ).all()
    if dead:
        noted = notes.noted()
        for row in dead:
            if (row.id, row.lease_until) in noted:
                session.execute(_while_ours(row).values(**_outcome(OutboxStatus.SENT, None, now)))
                _audit(
                    session,
                    row,
                    OutboxStatus.SENT,
                    None,
                    recovered="noted as accepted before a crash",
                )
                log.info("outbox: reply %s was accepted before a crash; not sent again", row.id,
                         extra=_ids(row))  # fmt: skip
    if not session.scalar(select(exists().where(outbox_status_is(OutboxStatus.SENDING)))):
        notes.clear()


def _while_ours(row: Outgoing) -> Update:
    """An UPDATE of a claimed reply that does nothing once our lease is no longer its lease:
    never overwrite what another sender did since."""
    return update(Outgoing).where(
        Outgoing.id == row.id,
        outbox_status_is(OutboxStatus.SENDING),
        Outgoing.lease_until == row.lease_until,
    )


def _release(app: App, rows: list[Outgoing]) -> None:
    """Give claimed, unsent replies back: due again at once, the attempt not counted."""
    if not rows:
        return
    with app.sessions.begin() as session:
        for row in rows:
            session.execute(
                _while_ours(row).values(
                    status=OutboxStatus.PENDING, lease_until=None, attempts=Outgoing.attempts - 1
                )
            )


def _finish(
    app: App, rows: list[Outgoing], status: str, error: str | None, retry_in: float = 0.0
) -> None:
    """Record what became of claimed replies, in one transaction."""
    if not rows:
        return
    values = _outcome(status, error, utcnow(), retry_in)
    while True:
        try:
            with app.sessions.begin() as session:
                for row in rows:
                    session.execute(_while_ours(row).values(**values))
                    _audit(session, row, status, error)
            return
        except DBAPIError:
            # The database is away. We know what happened to these replies: keep trying to
            # say so while our leases hold; after, the sent log (or a resend) covers them.
            if any(r.lease_until is None or utcnow() >= r.lease_until for r in rows):
                raise
            log.warning("outbox: cannot mark %d replies %s yet; retrying", len(rows), status)
            time.sleep(0.5)


def _outcome(
    status: str, error: str | None, now: datetime, retry_in: float = 0.0
) -> dict[str, object]:
    """The columns of a claimed reply once its outcome is known; the lease is given up."""
    values: dict[str, object] = {"status": status, "lease_until": None, "last_error": error}
    if status == OutboxStatus.SENT:
        values["sent_at"] = now
    if status == OutboxStatus.PENDING:
        values["next_attempt_at"] = now + timedelta(seconds=retry_in)
    return values


def _audit(session: Session, row: Outgoing, status: str, error: str | None, **detail: str) -> None:
    ticket = row.ticket_id
    if status == OutboxStatus.SENT:
        record(session, "reply_sent", ticket=ticket, outbox=row.id, to=row.to_addr, **detail)
    elif status == OutboxStatus.FAILED:
        record(session, "reply_failed", ticket=ticket, outbox=row.id, error=error)
    else:
        record(session, "reply_deferred", ticket=ticket, outbox=row.id, error=error)


def run_sender(app: App, stop: threading.Event, idle_wait: float = 1.0) -> None:
    """The outbox loop: send while there is work, then sleep until woken or the next poll."""
    if app.settings.smtp is None:
        return
    mailer = Mailer(app.settings.smtp, tokens=app.tokens)
    try:
        while not stop.is_set():
            try:
                busy = send_due(app, mailer) > 0
            except Exception:
                log.exception("outbox: sending failed; retrying shortly")
                busy = False
                stop.wait(2.0)
            if not busy:
                mailer.close()  # don't hold an idle connection the relay will drop anyway
                app.outbox_ready.wait(idle_wait)
                app.outbox_ready.clear()
    finally:
        mailer.close()
