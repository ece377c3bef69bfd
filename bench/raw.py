"""The raw limit: LMTP in, IMAP out, SMTP reply, with no privbot logic; and Dovecot's IDLE delay."""

from __future__ import annotations

import json
import math
import select
import subprocess
import sys
import time
from typing import Any

from bench.harness import (
    REPO,
    MailMaker,
    TimedRelay,
    deliver_in_thread,
    empty_inbox,
    latencies,
    summary,
    throughput,
)
from testing.servers import Dovecot


def idle_delay(dovecot: Dovecot, maker: MailMaker, samples: int) -> dict[str, Any]:
    """Seconds from LMTP's 250 to Dovecot's EXISTS reaching a client in IDLE."""
    delays: list[float] = []
    missed = 0
    client = dovecot.client()
    try:
        client.select_folder("INBOX")
        for letter in maker.make(samples):
            client.idle()
            time.sleep(0.05)
            dovecot.deliver(letter.raw)
            sent = time.monotonic()
            readable, _, _ = select.select([client.socket()], [], [], 3.0)
            woke = time.monotonic()
            client.idle_done()
            if readable:
                delays.append(woke - sent)
            else:
                missed += 1
    finally:
        client.logout()
    empty_inbox(dovecot)
    return {**summary(delays), "missed": missed}


def raw_limit(
    dovecot: Dovecot, relay: TimedRelay, maker: MailMaker, count: int, timeout: float
) -> dict[str, Any]:
    """Deliver ``count`` messages by LMTP while a plain IMAP+SMTP peer answers each one."""
    empty_inbox(dovecot)
    letters = maker.make(count)
    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.raw_peer",
            str(dovecot.imap_port),
            dovecot.user,
            dovecot.password,
            str(relay.port),
            str(count),
            str(timeout),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        if peer.stdout.readline().strip() != "ready":
            raise RuntimeError(
                f"raw peer did not start: {peer.stderr.read() if peer.stderr else ''}"
            )
        thread, box = deliver_in_thread(dovecot, letters, None, "raw: deliver (LMTP)")
        thread.join(timeout)
        got = relay.wait_for({x.message_id for x in letters}, timeout=timeout, stall=20)
        out, err = peer.communicate(timeout=timeout)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    delivery = box[0]
    peer_stats = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-500:]}
    lat = latencies(delivery, relay)
    fetched = peer_stats.get("fetched", 0)
    sent = peer_stats.get("sent", 0)
    return {
        "messages": count,
        "replies": got,
        "throughput_msg_s": round(throughput(delivery, relay), 1),
        "lmtp_deliver_msg_s": round(delivery.rate, 1),
        "imap_fetch_move_msg_s": _rate(fetched, peer_stats.get("imap_busy_s", 0.0)),
        "smtp_send_msg_s": _rate(sent, peer_stats.get("smtp_busy_s", 0.0)),
        "latency_s": summary(lat),
        "delivery_error": delivery.error,
    }


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else math.nan
