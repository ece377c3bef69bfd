"""`privbot serve` as real processes: kill -9 mid-batch, SIGTERM, two processes on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from privbot.app import App
from privbot.models import Message, Outgoing, Ticket
from testing.apps import mail, make_app, serve_env, wait_until
from testing.servers import CaptureRelay, Dovecot


class Serve:
    """`privbot serve` subprocesses with their logs kept for the failure message."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"serve-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "privbot", "serve"], env=self.env, stdout=log, stderr=log
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def tail(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in sorted(self.logs.glob("serve-*.log")))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    runner = Serve({}, tmp_path)
    yield runner
    runner.kill_all()


def _counts(app: App) -> tuple[int, int, int]:
    with app.sessions() as s:
        handled = s.scalar(select(func.count(Message.id)).where(Message.status == "handled"))
        sent = s.scalar(select(func.count(Outgoing.id)).where(Outgoing.status == "sent"))
        tickets = s.scalar(select(func.count(Ticket.id)))
    return handled or 0, sent or 0, tickets or 0


def _check_exactly_once(app: App, relay: CaptureRelay, n: int, kills: int) -> None:
    with app.sessions() as s:
        assert s.scalar(select(func.count(Message.id))) == n
        assert s.scalar(select(func.count(Outgoing.id))) == n  # one reply composed per message
        per_message = Counter(s.scalars(select(Message.ticket_id)).all())
        assert len(per_message) == n and max(per_message.values()) == 1
    captured = relay.messages
    ids = Counter(m["Message-ID"] for m in captured)
    answers = {m["In-Reply-To"] for m in captured}
    assert len(ids) == n, "every human message got one distinct reply"
    assert len(answers) == n
    # A kill between the relay's 250 and the commit can resend that one reply, with the
    # same Message-ID; nothing else may repeat.
    assert len(captured) - n <= kills, f"duplicates: {[i for i, c in ids.items() if c > 1]}"


def test_kill_9_mid_batch_loses_nothing_and_doubles_nothing(
    sqlite_url: str, dovecot: Dovecot, relay: CaptureRelay, serve: Serve
) -> None:
    n = 40
    serve.env.update(serve_env(sqlite_url, imap_url=dovecot.imap_url(), smtp_url=relay.url))
    app = make_app(sqlite_url)
    for i in range(n):
        dovecot.deliver(mail(sender=f"user{i}@example.org", message_id=f"k{i}@example.org"))
    kills = 0
    for threshold in (5, 20):
        proc = serve.start()
        wait_until(lambda t=threshold: _counts(app)[0] >= t, timeout=60, what="progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    serve.start()
    try:
        wait_until(lambda: _counts(app)[:2] == (n, n), timeout=90, what="all handled and sent")
    except AssertionError:
        raise AssertionError(f"{_counts(app)}\n{serve.tail()}") from None
    relay.wait_for(n)
    time.sleep(0.5)  # let any stray duplicate arrive before counting
    _check_exactly_once(app, relay, n, kills)
    wait_until(lambda: dovecot.folder_count("INBOX") == 0, what="inbox emptied")
    assert dovecot.folder_count("privbot/processed") == n


def test_sigterm_stops_cleanly(
    sqlite_url: str, dovecot: Dovecot, relay: CaptureRelay, serve: Serve
) -> None:
    serve.env.update(serve_env(sqlite_url, imap_url=dovecot.imap_url(), smtp_url=relay.url))
    proc = serve.start()
    dovecot.deliver(mail(sender="term@example.org"))
    relay.wait_for(1, timeout=30)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in serve.tail()


def test_two_processes_on_postgresql_handle_each_message_once(
    pg_url: str, dovecot: Dovecot, relay: CaptureRelay, serve: Serve
) -> None:
    n = 60
    serve.env.update(serve_env(pg_url, imap_url=dovecot.imap_url(), smtp_url=relay.url))
    app = make_app(pg_url)
    serve.start()
    serve.start()
    for i in range(n):
        dovecot.deliver(mail(sender=f"pg{i}@example.org", message_id=f"pg{i}@example.org"))
    try:
        wait_until(lambda: _counts(app)[:2] == (n, n), timeout=90, what="all handled and sent")
    except AssertionError:
        raise AssertionError(f"{_counts(app)}\n{serve.tail()}") from None
    relay.wait_for(n)
    time.sleep(0.5)
    _check_exactly_once(app, relay, n, kills=0)
    assert len(relay.messages) == n


def test_three_processes_one_killed_midway(
    pg_url: str, dovecot: Dovecot, relay: CaptureRelay, serve: Serve
) -> None:
    n = int(os.environ.get("PRIVBOT_SCALE_MESSAGES", "150"))  # the soak: 2000
    serve.env.update(serve_env(pg_url, imap_url=dovecot.imap_url(), smtp_url=relay.url))
    app = make_app(pg_url)
    victims = [serve.start() for _ in range(3)]
    for i in range(n):
        dovecot.deliver(mail(sender=f"s{i}@example.org", message_id=f"s{i}@example.org"))
        if i == n // 2:
            victims[0].send_signal(signal.SIGKILL)  # one of three dies midway
    try:
        wait_until(lambda: _counts(app)[:2] == (n, n), timeout=60 + n * 0.2,
                   what="all handled and sent")  # fmt: skip
    except AssertionError:
        raise AssertionError(f"{_counts(app)}\n{serve.tail()}") from None
    relay.wait_for(n)
    time.sleep(1.5)  # a reply the victim was sending may come once more after its lease
    _check_exactly_once(app, relay, n, kills=1)
