"""py-spy around a serve process: record while a burst runs, then sum the samples per function."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


@contextlib.contextmanager
def recording(pid: int, out: Path, seconds: int = 120) -> Iterator[None]:
    """py-spy record (raw collapsed stacks, per thread, waits included: wall-clock shares)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    spy = subprocess.Popen(
        [binary, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "200",
         "--threads", "--idle", "-d", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def top(path: Path, thread: str, count: int = 25) -> list[tuple[float, str]]:
    """(share of the thread's samples, function) inclusive, for frames of one thread."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not n.isdigit() or thread not in frames[0]:
            continue
        total += int(n)
        seen = set()
        for frame in frames[1:]:
            m = _FRAME.match(frame)
            name = frame
            if m:
                file = re.sub(r"^.*/(site-packages|src|python3\.\d+)/", "", m.group("file"))
                name = f"{file}:{m.group('func')}"
            if name not in seen:
                seen.add(name)
                inclusive[name] += int(n)
    return (
        [(round(100 * v / total, 1), k) for k, v in inclusive.most_common(count)] if total else []
    )
