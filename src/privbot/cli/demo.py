"""`privbot demo`: the real pipeline against servers of its own, on a machine with none.

It starts pymap (a real IMAP server, in memory) and an SMTP capture server, puts a handful
of sample messages in the mailbox, runs the real watcher, processor and outbox against
them, prints what happened, and keeps serving until Ctrl-C.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient
from sqlalchemy import func, select

from privbot.app import App, build_app
from privbot.cli.tables import format_table
from privbot.config import load_settings
from privbot.models import (
    Message,
    MessageStatus,
    OutboxStatus,
    Outgoing,
    Suppression,
    Ticket,
    TicketStatus,
)
from privbot.serve import Service
from privbot.staff.auth import add_staff
from privbot.tickets import ref

SAMPLES = Path(__file__).with_name("demo_mail")
USER, PASSWORD = "support", "demo"
STAFF, STAFF_PASSWORD = "demo@junocloud.me", "demo-password"


@dataclass
class Capture:
    """A minimal SMTP relay that keeps what privbot sends."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pymap exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pymap did not start listening")


def _start_pymap(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("pymap", path=str(Path(sys.executable).parent)) or shutil.which("pymap")
    if exe is None:
        raise RuntimeError("the pymap command is not installed (pip install pymap)")
    args = [exe, "--host", "127.0.0.1", "--port", str(port), "--no-tls", "dict"]
    args += ["--demo-user", USER, "--demo-password", PASSWORD]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_port(port, proc)
    return proc


def _deliver_samples(port: int) -> int:
    with IMAPClient("127.0.0.1", port, ssl=False) as client:
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.login(USER, PASSWORD)
        files = sorted(SAMPLES.glob("*.eml"))
        for path in files:
            client.append("INBOX", path.read_bytes())
        return len(files)


def _wait_done(app: App, expected: int, capture: Capture, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.sessions() as s:
            done = s.scalar(
                select(func.count(Message.id)).where(Message.status != MessageStatus.RECEIVED)
            )
            queued = s.scalar(select(func.count(Outgoing.id)))
            unsent = s.scalar(
                select(func.count(Outgoing.id)).where(Outgoing.status != OutboxStatus.SENT)
            )
        if done == expected and unsent == 0 and len(capture.messages) >= (queued or 0):
            return
        time.sleep(0.1)


def _report(app: App, capture: Capture) -> str:
    with app.sessions() as s:
        rows = s.execute(
            select(Message.id, Message.sender, Message.subject, Message.status, Message.reason,
                   Ticket.id.label("ticket"), Ticket.type, Ticket.status.label("ticket_status"),
                   Ticket.intents)
            .outerjoin(Ticket, Ticket.id == Message.ticket_id)
            .order_by(Message.id)
        ).all()  # fmt: skip
        optouts = {
            a: sorted(s.scalars(select(Suppression.scope).where(Suppression.address == a)))
            for a in {r.sender for r in rows if r.sender}
        }
    table = [
        {
            "#": r.id,
            "from": r.sender,
            "subject": r.subject,
            "understood": ", ".join(r.intents or []) if r.status == MessageStatus.HANDLED else "-",
            "privbot did": _did(r, optouts.get(r.sender or "", [])),
        }
        for r in rows
    ]
    replies = [
        {"to": m["To"], "subject": m["Subject"], "auto-submitted": m["Auto-Submitted"]}
        for m in capture.messages
    ]
    return (
        "What privbot did with each message:\n"
        + format_table(table, ["#", "from", "subject", "understood", "privbot did"], width=64)
        + "\n\nReplies it sent (captured by the demo's SMTP server):\n"
        + format_table(replies, ["to", "subject", "auto-submitted"], width=50)
    )


def _did(row: Any, scopes: list[str]) -> str:
    if row.status != MessageStatus.HANDLED:
        return f"{row.status}, no reply: {row.reason}"
    done = [f"opt-out recorded ({', '.join(scopes)})"] if scopes else []
    if row.ticket_status == TicketStatus.DONE:
        done.append(f"answered ({ref(row.ticket)} closed)")
    else:
        done.append(f"ticket {ref(row.ticket)} {row.type}/{row.ticket_status}, replied")
    return "; ".join(done)


def run_demo(wait: bool = True) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="privbot-demo-"))
    imap_port, smtp_port = _free_port(), _free_port()
    print(f"privbot demo: starting pymap on 127.0.0.1:{imap_port}, SMTP capture on {smtp_port}")
    pymap = _start_pymap(imap_port)
    capture = Capture()
    relay = Controller(capture, hostname="127.0.0.1", port=smtp_port)
    relay.start()
    settings = load_settings(
        {
            "PRIVBOT_DATABASE_URL": f"sqlite:///{workdir / 'privbot.db'}",
            "PRIVBOT_IMAP_URL": f"imap://{USER}:{PASSWORD}@127.0.0.1:{imap_port}/INBOX",
            "PRIVBOT_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "PRIVBOT_WEB": f"127.0.0.1:{_free_port()}",
            "PRIVBOT_SECRET_KEY": uuid.uuid4().hex,  # sessions last as long as the demo
        }
    )
    app = build_app(settings)
    with app.sessions.begin() as session:
        add_staff(session, STAFF, STAFF_PASSWORD, actor="demo")
    service = None
    try:
        count = _deliver_samples(imap_port)
        print(f"delivered {count} sample messages to the mailbox; the watcher takes them now\n")
        service = Service(app).start()
        _wait_done(app, count, capture)
        print(_report(app, capture))
        web = f"http://{settings.web[0]}:{settings.web[1]}"
        print(f"\nDatabase: {workdir / 'privbot.db'}")
        print(f"Staff queue: {web}/ (sign in as {STAFF}, password {STAFF_PASSWORD})")
        print(f"Privacy chat: {web}/chat")
        if wait:
            print(
                f"\nStill serving. Add mail with any IMAP client "
                f"(imap://{USER}:{PASSWORD}@127.0.0.1:{imap_port}/INBOX); Ctrl-C stops."
            )
            seen = len(capture.messages)
            while True:
                time.sleep(1.0)
                for msg in capture.messages[seen:]:
                    print(f"reply sent: to {msg['To']}: {msg['Subject']}")
                seen = len(capture.messages)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        if service is not None:
            service.stop()
        app.close()
        relay.stop()
        pymap.terminate()
        pymap.wait(timeout=10)
    return 0
