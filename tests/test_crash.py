"""Crash consistency, quick setting: see tests/crash_harness.py for the soak."""

from __future__ import annotations

import os
from pathlib import Path

from tests.crash_harness import run

MESSAGES = int(os.environ.get("PRIVBOT_CRASH_MESSAGES", "60"))
KILLS = int(os.environ.get("PRIVBOT_CRASH_KILLS", "12"))


def test_killed_again_and_again_nothing_lost_nothing_doubled(
    server_tmp_path: Path, sqlite_url: str
) -> None:
    report = run(server_tmp_path / "crash", sqlite_url, MESSAGES, KILLS, seed=7)
    print("\n" + report.lines())
    assert sum(report.kills.values()) >= KILLS
    assert report.lost == 0 and report.stored == MESSAGES
    assert report.not_finished == 0 and report.left_in_inbox == 0
    assert report.tickets_doubled == 0
    assert report.replies_composed == MESSAGES  # one reply composed per message
    assert report.replies_distinct == MESSAGES  # and each one delivered
    # A kill at the after_send point comes after the sent log's note: never a resend. Only an
    # outside kill while the relay takes a reply, before the note, can resend it (same ID).
    assert report.resent <= report.kills["external"]
