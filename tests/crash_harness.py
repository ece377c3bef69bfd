"""Crash consistency: `privbot serve` killed again and again while mail arrives.

Mail is delivered by LMTP to a private Dovecot while `privbot serve` runs; privbot is
SIGKILLed at random moments, from outside (any instant) and from inside at named crash
points (after fetch, after store, mid-transaction, after send before marking), and
restarted each time. Afterwards every message must be handled exactly once, with one
reply composed and delivered for each, no ticket doubled and nothing left behind.

    .venv/bin/python -m tests.crash_harness --messages 400 --kills 300    # the soak
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from privbot.app import build_app
from privbot.config import load_settings
from privbot.models import Message, Outgoing, Ticket
from testing.apps import mail, serve_env
from testing.servers import CaptureRelay, Dovecot

# Per fetch (after_fetch, after_store: up to 50 messages), per transaction (up to 10
# messages) and per reply: a crash every few dozen steps.
CRASH_POINTS = "after_fetch:0.03,after_store:0.05,mid_transaction:0.05,after_send:0.02"
_POINT = re.compile(rb"crash point (\w+): killing myself")


@dataclass
class Report:
    messages: int
    kills: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    lost: int = 0
    tickets_doubled: int = 0
    replies_composed: int = 0
    replies_distinct: int = 0
    deliveries: int = 0  # relay deliveries, resends of the same Message-ID included
    left_in_inbox: int = 0
    not_finished: int = 0

    @property
    def resent(self) -> int:
        return self.deliveries - self.replies_distinct

    def lines(self) -> str:
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items())) or "none"
        return (
            f"kill points tried: {sum(self.kills.values())} ({kills})\n"
            f"messages: {self.messages}, stored {self.stored}, lost {self.lost}, "
            f"tickets doubled {self.tickets_doubled}, not finished {self.not_finished}\n"
            f"replies: composed {self.replies_composed}, distinct delivered "
            f"{self.replies_distinct}, resent with the same Message-ID {self.resent}; "
            f"left in the inbox {self.left_in_inbox}"
        )


def run(workdir: Path, db_url: str, messages: int, kills: int, seed: int = 1, log=print) -> Report:
    rng = random.Random(seed)
    report = Report(messages)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    with Dovecot(workdir / "dovecot") as dovecot, CaptureRelay() as relay:
        dovecot.start()
        relay.start()
        env = {**os.environ, **serve_env(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url)}
        env["PRIVBOT_SEND_LEASE_SECONDS"] = "1"
        ids = [f"crash{i}.{uuid.uuid4().hex[:8]}@example.org" for i in range(messages)]
        # Mail keeps arriving the whole run: a slice before each round, so every kill
        # lands on work in progress, however fast this machine is.
        per_round = -(-messages // kills)
        app = build_app(load_settings({"PRIVBOT_DATABASE_URL": db_url}))
        rounds = 0
        while sum(report.kills.values()) < kills and rounds < kills * 3:
            _deliver(dovecot, ids[rounds * per_round : (rounds + 1) * per_round])
            rounds += 1
            crashing = {**env, "PRIVBOT_CRASH_POINTS": CRASH_POINTS}
            proc = subprocess.Popen(
                [sys.executable, "-m", "privbot", "serve"],
                env=crashing, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                proc.wait(timeout=rng.uniform(0.3, 2.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)  # from outside, at any instant
                proc.wait()
                report.kills["external"] += 1
            else:
                err = proc.stderr.read() if proc.stderr else b""
                found = _POINT.search(err)
                report.kills[found.group(1).decode() if found else f"exit {proc.returncode}"] += 1
            finally:
                if proc.stderr:
                    proc.stderr.close()
            if rounds % 25 == 0:
                log(f"  {sum(report.kills.values())} kills so far, {_done(app)} handled")
        _deliver(dovecot, ids[rounds * per_round :])
        # The last run, undisturbed: whatever the kills left must be finished now.
        final = subprocess.Popen(
            [sys.executable, "-m", "privbot", "serve"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60 + messages * 0.1
            while time.monotonic() < deadline:
                if _done(app) >= messages and _unsent(app) == 0:
                    break
                time.sleep(0.2)
            time.sleep(1.5)  # a lease may still hand out one last resend
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(timeout=30)
        _verify(app, relay, dovecot, ids, report)
        app.close()
    return report


def _deliver(dovecot: Dovecot, ids: list[str]) -> None:
    for message_id in ids:
        person = message_id.split(".")[0]
        dovecot.deliver(mail(sender=f"{person}@example.org", subject=f"request {person}",
                             body="Do you share my data with third parties?",
                             message_id=message_id))  # fmt: skip


def _done(app) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count(Message.id)).where(Message.status == "handled")) or 0


def _unsent(app) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count(Outgoing.id)).where(Outgoing.status != "sent")) or 0


def _verify(app, relay: CaptureRelay, dovecot: Dovecot, ids: list[str], report: Report) -> None:
    unsent = _unsent(app)
    with app.sessions() as s:
        stored_ids = set(s.scalars(select(Message.message_id)).all())
        report.stored = s.scalar(select(func.count(Message.id))) or 0
        report.not_finished = (
            s.scalar(select(func.count(Message.id)).where(Message.status != "handled")) or 0
        ) + unsent
        per_requester = Counter(s.scalars(select(Ticket.requester)).all())
        report.tickets_doubled = sum(c - 1 for c in per_requester.values() if c > 1)
        report.replies_composed = s.scalar(select(func.count(Outgoing.id))) or 0
    report.lost = sum(1 for i in ids if i not in stored_ids)
    captured = relay.messages
    report.deliveries = len(captured)
    report.replies_distinct = len({m["Message-ID"] for m in captured})
    report.left_in_inbox = dovecot.folder_count("INBOX")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="privbot-crash-", dir="/tmp"))
    db_url = args.database or f"sqlite:///{workdir / 'privbot.db'}"
    report = run(workdir, db_url, args.messages, args.kills, args.seed)
    print(report.lines())
    ok = report.lost == 0 and report.tickets_doubled == 0 and report.not_finished == 0
    ok = ok and report.replies_composed == args.messages == report.replies_distinct
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
