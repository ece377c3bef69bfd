"""The SMTP receiver: mail delivered straight to privbot (aiosmtpd).

250 means stored: the reply to DATA is sent only after the message is committed, with the
receiver's own Authentication-Results on top (SPF, DKIM, DMARC: `mail/verify.py`; copies
that claim its authserv-id are removed). A
database that cannot take it gets 451 (the sender's MTA keeps the mail and retries), an
address that is not ours 550 at RCPT, a message over the size limit 552.

Limits keep a flood of connections from taking the process down: connections are counted
in all and per client (`ConnectionLimits`), the excess is answered 421 and closed before
aiosmtpd sees it, a connection idle before DATA is closed after PRIVBOT_SMTP_IDLE_SECONDS,
and a repeated error is logged once per interval with a count (`RateLimitedLog`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from privbot.app import App
from privbot.mail.verify import Arrival, Lookups, load_suffixes, make_resolver, stamp
from privbot.pipeline.store import store_message

log = logging.getLogger(__name__)

# The DATA transfer keeps aiosmtpd's usual five minutes: a large message on a slow link
# must not be cut off by the short wait between commands.
DATA_TIMEOUT = 300.0
# Open files kept out of the receiver's reach: asyncio accepts up to 100 connections in one
# go before any can be refused, and the database, web app and logs need the rest.
FD_RESERVE = 150
# The same kind of error is logged at most once per this many seconds.
LOG_INTERVAL = 60.0


@dataclass
class RateLimitedLog:
    """At most one line per kind per interval; the next line says how many were left out."""

    logger: logging.Logger
    interval: float = LOG_INTERVAL
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: Counter[str] = field(default_factory=Counter)

    def log(self, level: int, kind: str, msg: str, *args: object, exc_info: Any = None) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] += 1
            return
        self._last[kind] = now
        left_out = self._suppressed.pop(kind, 0)
        if left_out:
            msg += f" (and {left_out} more like it in the last {now - last:.0f} s)"
        self.logger.log(level, msg, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Report what is still held back (at stop: a burst's count must not be lost)."""
        for kind, left_out in sorted(self._suppressed.items()):
            self.logger.warning("smtp: %d more %r not logged", left_out, kind)
        self._suppressed.clear()


def client_key(peer: Any) -> str:
    """Who counts as one client: an IPv4 address, or an IPv6 /64 (one host has many)."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class ConnectionLimits:
    """Connections open now, in all and per client; one per receiver, used on its loop only."""

    total: int
    per_client: int
    open: int = 0
    by_client: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str) -> str | None:
        """Count the connection in, or say why it is refused."""
        if self.open >= self.total:
            return "total"
        if self.by_client[client] >= self.per_client:
            return "client"
        self.open += 1
        self.by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP, counted: over a limit the connection gets 421 and never a session."""

    def __init__(
        self, handler: Any, *, limits: ConnectionLimits, errors: RateLimitedLog, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.errors = errors
        self.client: str | None = None  # set once counted in
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:  # STARTTLS calls it again: the same connection
            super().connection_made(transport)
            return
        client = client_key(transport.get_extra_info("peername"))
        reason = self.limits.admit(client)
        if reason is not None:
            # Refused before aiosmtpd starts a session: no timers, no task, no log lines.
            self.refused = True
            which = (
                f"{self.limits.open} open (PRIVBOT_SMTP_MAX_CONNECTIONS)"
                if reason == "total"
                else f"{self.limits.per_client} open from it (PRIVBOT_SMTP_MAX_PER_CLIENT)"
            )
            self.errors.log(
                logging.WARNING,
                f"refused-{reason}",
                "smtp: refused a connection from %s with 421: %s",
                client,
                which,
            )
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 Too many connections; try again later\r\n")
            transport.close()
            return
        self.client = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        if self.client is not None:
            self.limits.release(self.client)
            self.client = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        return False if self.refused else super().eof_received()

    def _timeout_cb(self) -> None:
        # Say why before closing (RFC 5321 4.5.3.2: a server may end an idle session).
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(b"421 4.4.2 Idle for too long; closing\r\n")
        super()._timeout_cb()

    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(DATA_TIMEOUT)
        await super().smtp_DATA(arg)


class ReceiverController(Controller):
    """A Controller whose connections share one set of limits and one rate-limited log."""

    def __init__(
        self, handler: Any, *, limits: ConnectionLimits, errors: RateLimitedLog, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.errors = errors
        self.loop.set_exception_handler(self._loop_error)

    def factory(self) -> SMTP:
        return LimitedSMTP(self.handler, limits=self.limits, errors=self.errors, **self.SMTP_kwargs)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio logs each failed accept with a traceback, up to 100 in one tick, and
        # schedules a retry per failure: out of open files that was 88,000 lines in 5 s.
        exc = context.get("exception")
        message = str(context.get("message", "error"))
        kind = f"{message.split('(')[0]}|{type(exc).__name__}|{getattr(exc, 'errno', None)}"
        out_of_files = isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)
        hint = ": lower PRIVBOT_SMTP_MAX_CONNECTIONS or raise `ulimit -n`" if out_of_files else ""
        self.errors.log(
            logging.ERROR,
            kind,
            "smtp: %s: %s%s",
            message.split("(")[0].strip(),
            exc,
            hint,
            exc_info=None if out_of_files else exc,
        )

    def stop(self, no_assert: bool = False) -> None:
        super().stop(no_assert)
        self.errors.flush()


class Receiver:
    """aiosmtpd handler: the whole surface is RCPT and DATA."""

    def __init__(self, app: App, errors: RateLimitedLog | None = None) -> None:
        self.app = app
        self.errors = errors or RateLimitedLog(log)
        self.suffixes = load_suffixes()  # DMARC's organizational domains, read once

    def verified(self, raw: bytes, session: Session, mail_from: str) -> bytes:
        """The message with our Authentication-Results on top (run in a worker thread)."""
        settings = self.app.settings
        peer = session.peer
        arrival = Arrival(
            client_ip=str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or ""),
            helo=str(session.host_name or ""),
            mail_from=mail_from,
        )
        lookups = Lookups(make_resolver(settings), settings.dns_timeout)
        return stamp(raw, arrival, authserv_id=settings.receiver_authserv_id,
                     lookups=lookups, suffixes=self.suffixes)  # fmt: skip

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address.strip().lower() not in self.app.settings.our_addresses:
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        if len(raw) > self.app.settings.max_message_bytes:
            return "552 5.3.4 Message too big"
        mail_from = (envelope.mail_from or "").strip().strip("<>")
        try:
            # Verified first (SPF, DKIM, DMARC; never raises), so our verdict is stored with it.
            raw = await asyncio.to_thread(self.verified, raw, session, mail_from)
            stored = await asyncio.to_thread(
                store_message,
                self.app.sessions,
                raw,
                source="smtp",
                source_ref=f"{session.peer}",
                envelope_from=mail_from.lower(),
            )
        except Exception as exc:
            # A database that is down fails every delivery the same way: one line a minute.
            kind = f"store|{type(exc).__name__}"
            msg = "smtp: could not store a message from %s: %s"
            self.errors.log(logging.ERROR, kind, msg, mail_from, exc)
            return "451 4.3.0 Temporary failure storing the message; try again later"
        self.app.inbound_ready.set()
        log.info("smtp: stored message %s (new=%s)", stored.id, stored.new,
                 extra={"message_id": stored.id})  # fmt: skip
        return "250 2.0.0 OK: stored"


def connection_cap(wanted: int) -> int:
    """PRIVBOT_SMTP_MAX_CONNECTIONS, lowered to leave FD_RESERVE of the open-files limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - FD_RESERVE:
        return wanted
    cap = max(1, soft - FD_RESERVE)
    log.warning(
        "smtp: at most %d connections (PRIVBOT_SMTP_MAX_CONNECTIONS is %d) "
        "to stay within the open-files limit of %d",
        cap,
        wanted,
        soft,
    )
    return cap


def listening(controller: Controller) -> bool:
    """Whether the receiver is accepting connections now (readiness: ops/health.py)."""
    server = controller.server
    return server is not None and server.is_serving() and controller.loop.is_running()


def start_receiver(app: App) -> ReceiverController:
    """Start listening on PRIVBOT_LISTEN; returns the running controller (call .stop())."""
    s = app.settings
    if s.listen is None:
        raise ValueError("PRIVBOT_LISTEN is not set")
    host, port = s.listen
    errors = RateLimitedLog(log)
    controller = ReceiverController(
        Receiver(app, errors),
        limits=ConnectionLimits(connection_cap(s.smtp_max_connections), s.smtp_max_per_client),
        errors=errors,
        hostname=host,
        port=port,
        data_size_limit=s.max_message_bytes,
        # Keep the bytes as sent: decoding to str would alter 8-bit mail.
        decode_data=False,
        server_hostname=s.domain,
        ident="privbot",
        timeout=s.smtp_idle_seconds,
    )
    controller.start()
    return controller
