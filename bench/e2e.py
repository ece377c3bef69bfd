"""End to end through real ``privbot serve`` processes: bursts, fixed rates, 1 to N processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    MailMaker,
    ServeProcesses,
    TimedRelay,
    deliver,
    deliver_in_thread,
    empty_inbox,
    latencies,
    summary,
    throughput,
)
from testing.servers import Dovecot

WARM_UP = 3


@contextlib.contextmanager
def serving(
    dovecot: Dovecot,
    relay: TimedRelay,
    maker: MailMaker,
    db_url: str,
    logs: Path,
    processes: int = 1,
    extra_env: dict[str, str] | None = None,
    pin: bool = False,
) -> Iterator[ServeProcesses]:
    """``processes`` x ``privbot serve`` on these servers, warmed up (first replies sent).

    `extra_env`: more environment (PYTHONPATH: another checkout's privbot serves)."""
    empty_inbox(dovecot)
    env = {
        "PRIVBOT_DATABASE_URL": db_url,
        "PRIVBOT_IMAP_URL": dovecot.imap_url(),
        "PRIVBOT_SMTP_URL": relay.url,
        # Every bench person writes from example.org: measure privbot, not its domain cap.
        "PRIVBOT_REPLY_CAP_PER_DOMAIN": "1000000",
        **(extra_env or {}),
    }
    with ServeProcesses(env, logs) as serve:
        serve.start(processes, pin)
        letters = maker.make(WARM_UP)
        deliver(dovecot, letters)
        got = relay.wait_for({x.message_id for x in letters}, timeout=60, stall=60)
        if got < len(letters):
            raise RuntimeError(f"privbot serve answered {got}/{len(letters)} warm-up mails:\n"
                               f"{serve.tail()}")  # fmt: skip
        yield serve


def load(
    dovecot: Dovecot,
    relay: TimedRelay,
    maker: MailMaker,
    count: int,
    rate: float | None,
    timeout: float,
    label: str,
    serve: ServeProcesses | None = None,
) -> dict[str, Any]:
    """Deliver ``count`` messages (a burst, or paced at ``rate``/s) and time every reply.

    With ``serve``: also the CPU its processes spent per message (what privbot itself costs).
    """
    letters = maker.make(count)
    cpu_before = serve.cpu_seconds() if serve else 0.0
    started = time.monotonic()
    thread, box = deliver_in_thread(dovecot, letters, rate, label)
    thread.join(timeout)
    left = max(5.0, timeout - (time.monotonic() - started))
    got = relay.wait_for({x.message_id for x in letters}, timeout=left, stall=30)
    delivery = box[0]
    cpu = (serve.cpu_seconds() - cpu_before) if serve else None
    return {
        "offered_msg_s": rate if rate else "burst",
        "delivered_msg_s": round(delivery.rate, 1),
        "messages": count,
        "replies": got,
        "throughput_msg_s": round(throughput(delivery, relay), 1),
        "latency_s": summary(latencies(delivery, relay)),
        "serve_cpu_ms_per_msg": round(1000 * cpu / max(got, 1), 2) if cpu is not None else None,
        "delivery_error": delivery.error,
    }
