"""Helpers for tests of the core: build an App, write a message, sign it with DKIM, wait
for a condition, send the outbox one reply at a time."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TypeVar

import dkim

from privbot.app import App, build_app
from privbot.config import load_settings
from privbot.models import Outgoing, utcnow
from privbot.outbox.sender import Mailer, claim_due, send_due

SUPPORT = "support@junocloud.me"
T = TypeVar("T")


# Tests never ask the machine's resolver: a DNS lookup the SMTP receiver makes goes to a
# loopback port where nothing answers (refused at once: temperror), unless a test starts
# its own DNS server (testing.servers.DnsServer) and says so.
NO_DNS = "127.0.0.1:9"


def make_app(db_url: str, **env: str) -> App:
    """An App on `db_url`; keyword arguments are PRIVBOT_* settings without the prefix."""
    values = {"PRIVBOT_DATABASE_URL": db_url, "PRIVBOT_DNS_SERVERS": NO_DNS}
    values.update({f"PRIVBOT_{k.upper()}": v for k, v in env.items()})
    return build_app(load_settings(values))


def serve_env(db_url: str, **env: str) -> dict[str, str]:
    """Environment for a `privbot serve` subprocess (fast retries for tests)."""
    values = {
        "PRIVBOT_DATABASE_URL": db_url,
        "PRIVBOT_RETRY_SECONDS": "0.2",
        # A killed sender's reply is taken over after this; the test relay answers at once.
        "PRIVBOT_SEND_LEASE_SECONDS": "3",
        # Every test person writes from example.org; the domain cap has tests of its own.
        "PRIVBOT_REPLY_CAP_PER_DOMAIN": "1000000",
        "PRIVBOT_DNS_SERVERS": NO_DNS,
    }
    values.update({f"PRIVBOT_{k.upper()}": v for k, v in env.items()})
    return values


def mail(
    *,
    sender: str = "alice@example.org",
    subject: str = "A question about my data",
    body: str = "Hello,\n\nwhat do you store about me?\n\nAlice\n",
    to: str = SUPPORT,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain human message as raw bytes; `headers` adds or overrides headers."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{message_id or uuid.uuid4().hex + '@example.org'}>"
    for name, value in (headers or {}).items():
        del msg[name]
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


@dataclass(frozen=True)
class DkimKey:
    """An RSA key for signing test mail, and the TXT record that publishes it."""

    private_pem: bytes
    public_der: bytes

    @property
    def record(self) -> str:
        """The `selector._domainkey.domain` TXT record (RFC 6376 3.6.1)."""
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(self.public_der).decode()

    def sign(self, raw: bytes, domain: str, selector: str = "sel") -> bytes:
        """`raw` with a DKIM-Signature of `domain` on top (dkimpy's dkim.sign)."""
        signature = dkim.sign(
            raw, selector.encode(), domain.encode(), self.private_pem,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )  # fmt: skip
        return signature + raw


def dkim_key(bits: int = 2048) -> DkimKey:
    """A new RSA key, made by the openssl command (a Debian base package)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a DKIM test key")
    private = subprocess.run(
        [openssl, "genrsa", "-traditional", str(bits)], check=True, capture_output=True
    ).stdout
    public = subprocess.run(
        [openssl, "rsa", "-pubout", "-outform", "DER"],
        input=private, check=True, capture_output=True,
    ).stdout  # fmt: skip
    return DkimKey(private, public)


def wait_until(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def claim_next(app: App) -> Outgoing | None:
    """Take the next due reply under a lease; None when nothing is due."""
    rows = claim_due(app, 1)
    return rows[0] if rows else None


def send_one(app: App, mailer: Mailer) -> bool:
    """Send the next due reply, if any. Returns False when there was nothing to send."""
    return send_due(app, mailer, 1) > 0
