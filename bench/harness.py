"""What every benchmark shares: a work directory, a timing relay, paced delivery, serve processes.

The servers are the tests' own (``testing/servers.py``); nothing here re-implements them.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from testing.apps import mail
from testing.servers import CapturedEnvelope, CaptureRelay, Dovecot

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "corpora"
# Dovecot's mail user must traverse every parent of its directory: a 0755 base under /tmp.
WORK_BASE = Path(os.environ.get("PRIVBOT_BENCH_TMP", "/tmp/privbot-bench"))
_IN_REPLY_TO = re.compile(rb"^In-Reply-To:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def bar(total: int | None, desc: str, unit: str = "msg") -> tqdm:  # type: ignore[type-arg]
    """A progress bar on stderr; quiet when stderr is not a terminal except for the final line."""
    return tqdm(total=total, desc=f"{desc:<28}", unit=unit, leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def work_dir() -> Iterator[Path]:
    """A fresh 0755 directory under /tmp/privbot-bench, removed afterwards."""
    WORK_BASE.mkdir(parents=True, exist_ok=True)
    WORK_BASE.chmod(0o755)
    path = WORK_BASE / uuid.uuid4().hex[:12]
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- numbers -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of seconds, rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4),
        "mean": round(sum(values) / len(values), 4),
    }


# -- the relay with timestamps ------------------------------------------------------------------


class TimedRelay(CaptureRelay):
    """The tests' capture relay, recording when each reply arrived, keyed by In-Reply-To.

    It skips the parent's full parse of every message: the benchmark only needs the header,
    and parsing thousands of replies would steal CPU from what is being measured.
    """

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self._cond = threading.Condition()

    def _record(self, envelope: CapturedEnvelope) -> None:
        now = time.monotonic()
        found = _IN_REPLY_TO.search(envelope.raw[:8192])
        key = found.group(1).decode("ascii", "replace") if found else f"<none-{self.count}>"
        with self._cond:
            self.arrivals.setdefault(key, now)
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, keys: set[str], timeout: float, stall: float = 30.0) -> int:  # type: ignore[override]
        """Wait until every key arrived, the time is up, or nothing arrived for ``stall`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            last_count, last_change = -1, time.monotonic()
            while True:
                got = sum(1 for k in keys if k in self.arrivals)
                now = time.monotonic()
                if got == len(keys) or now > deadline or now - last_change > stall:
                    return got
                if got != last_count:
                    last_count, last_change = got, now
                self._cond.wait(0.2)


# -- mail to send ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    message_id: str  # with angle brackets, as the reply's In-Reply-To will carry it
    raw: bytes


def human_texts() -> list[str]:
    """Requests people write (our own tuning set: every intent, several languages)."""
    path = REPO / "tests" / "data" / "labelled" / "dev.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["text"].replace("\\n", "\n") for r in rows if r["text"].strip()]


class MailMaker:
    """Distinct human messages: a new sender each (the reply cap is per sender), unique IDs."""

    def __init__(self, texts: Sequence[str], tag: str) -> None:
        self.texts = list(texts)
        self.tag = tag
        self.n = 0

    def make(self, count: int) -> list[Letter]:
        out = []
        for _ in range(count):
            i = self.n
            self.n += 1
            text = self.texts[i % len(self.texts)]
            mid = f"bench-{self.tag}-{i}-{uuid.uuid4().hex[:8]}@example.org"
            first = text.strip().splitlines()[0][:60] if text.strip() else "Hello"
            raw = mail(
                sender=f"person{i}.{self.tag}@example.org",
                subject=first,
                body=f"Hello,\n\n{text}\n\nRegards,\nPerson {i}\n",
                message_id=mid,
            )
            out.append(Letter(f"<{mid}>", raw))
        return out


# -- delivery ----------------------------------------------------------------------------------


@dataclass
class Delivery:
    """Delivery times (monotonic, after LMTP's 250) keyed by Message-ID."""

    sent: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None

    @property
    def rate(self) -> float:
        span = self.finished - self.started
        return len(self.sent) / span if span > 0 else math.nan


def deliver(
    dovecot: Dovecot,
    letters: Sequence[Letter],
    rate: float | None = None,
    progress: str | None = None,
) -> Delivery:
    """Deliver by LMTP, as fast as possible (rate None) or paced at ``rate`` per second."""
    result = Delivery(started=time.monotonic())
    pbar = bar(len(letters), progress) if progress else None
    try:
        for i, letter in enumerate(letters):
            if rate:
                wait = result.started + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            dovecot.deliver(letter.raw)
            result.sent[letter.message_id] = time.monotonic()
            if pbar is not None:
                pbar.update(1)
    except Exception as exc:  # reported, never hidden: the run carries on with what was sent
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.finished = time.monotonic()
        if pbar is not None:
            pbar.close()
    return result


def deliver_in_thread(
    dovecot: Dovecot, letters: Sequence[Letter], rate: float | None, progress: str | None
) -> tuple[threading.Thread, list[Delivery]]:
    box: list[Delivery] = []
    thread = threading.Thread(
        target=lambda: box.append(deliver(dovecot, letters, rate, progress)),
        name="bench-deliver",
        daemon=True,
    )
    thread.start()
    return thread, box


def latencies(delivery: Delivery, relay: TimedRelay) -> list[float]:
    return [relay.arrivals[mid] - at for mid, at in delivery.sent.items() if mid in relay.arrivals]


def throughput(delivery: Delivery, relay: TimedRelay) -> float:
    """Replies per second from the first delivery to the last reply captured."""
    ends = [relay.arrivals[m] for m in delivery.sent if m in relay.arrivals]
    if not ends:
        return 0.0
    return len(ends) / (max(ends) - delivery.started)


def empty_inbox(dovecot: Dovecot) -> int:
    """Move whatever a previous phase left in INBOX aside, so each phase starts empty."""
    client = dovecot.client()
    try:
        if not client.folder_exists("bench-leftover"):
            client.create_folder("bench-leftover")
        client.select_folder("INBOX")
        uids = client.search("ALL")
        if uids:
            client.move(uids, "bench-leftover")
        return len(uids)
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def message_id_of(raw: bytes) -> str | None:
    found = _MESSAGE_ID.search(raw[:16384])
    return found.group(1).decode("ascii", "replace") if found else None


# -- privbot serve as a real process -----------------------------------------------------------


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MB; NaN if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


class ServeProcesses:
    """``python -m privbot serve`` subprocesses on one set of servers; logs in ``logs``."""

    READY_TIMEOUT = 60.0

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_paths: list[Path] = []

    def start(self, count: int = 1, pin: bool = False) -> None:
        """`pin`: process i runs on CPU i modulo the CPUs (`taskset`'s affinity), so that
        processes cannot borrow a core another one is idle on."""
        cpus = sorted(os.sched_getaffinity(0))
        for index in range(count):
            path = self.logs / f"serve-{uuid.uuid4().hex[:6]}.log"
            with path.open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "privbot", "serve"],
                    env=self.env,
                    cwd=REPO,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            if pin:
                os.sched_setaffinity(proc.pid, {cpus[index % len(cpus)]})
            self.procs.append(proc)
            self.log_paths.append(path)
        deadline = time.monotonic() + self.READY_TIMEOUT
        for proc, path in zip(self.procs, self.log_paths, strict=True):
            while "privbot serving" not in path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"privbot serve did not start:\n{self.tail()}")
                time.sleep(0.05)

    def peak_rss_mb(self) -> list[float]:
        return [round(vm_hwm_mb(p.pid), 1) for p in self.procs if p.poll() is None]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu_seconds(self) -> float:
        """User + system CPU the live processes have used so far (all their threads)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def errors(self) -> int:
        """Lines logged at ERROR or with a traceback, across the processes."""
        count = 0
        for path in self.log_paths:
            text = path.read_text(errors="replace")
            count += text.count(" ERROR ") + text.count("Traceback")
        return count

    def tail(self, chars: int = 2000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in self.log_paths)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> ServeProcesses:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
