"""The SMTP receiver: mail delivered straight to privbot (aiosmtpd).

250 means stored: the reply to DATA is sent only after the message is committed. A
database that cannot take it gets 451 (the sender's MTA keeps the mail and retries), an
address that is not ours 550 at RCPT, a message over the size limit 552.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from privbot.app import App
from privbot.pipeline.store import store_message

log = logging.getLogger(__name__)


class Receiver:
    """aiosmtpd handler: the whole surface is RCPT and DATA."""

    def __init__(self, app: App) -> None:
        self.app = app

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
        mail_from = envelope.mail_from or ""
        try:
            stored = await asyncio.to_thread(
                store_message,
                self.app.sessions,
                raw,
                source="smtp",
                source_ref=f"{session.peer}",
                envelope_from=mail_from.strip("<>").lower(),
            )
        except Exception as exc:
            log.error("smtp: could not store a message from %s: %s", mail_from, exc)
            return "451 4.3.0 Temporary failure storing the message; try again later"
        self.app.inbound_ready.set()
        log.info("smtp: stored message %s (new=%s)", stored.id, stored.new)
        return "250 2.0.0 OK: stored"


def start_receiver(app: App) -> Controller:
    """Start listening on PRIVBOT_LISTEN; returns the running controller (call .stop())."""
    if app.settings.listen is None:
        raise ValueError("PRIVBOT_LISTEN is not set")
    host, port = app.settings.listen
    controller = Controller(
        Receiver(app),
        hostname=host,
        port=port,
        data_size_limit=app.settings.max_message_bytes,
        # Keep the bytes as sent: decoding to str would alter 8-bit mail.
        decode_data=False,
        server_hostname=app.settings.domain,
        ident="privbot",
    )
    controller.start()
    return controller
