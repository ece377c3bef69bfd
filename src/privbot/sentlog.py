"""Replies the relay accepted, noted on disk the moment it said 250.

SMTP has no two-phase commit: if privbot dies between the relay's 250 and the database
recording the reply as sent, the reply goes out again. On SQLite that window was wide, as
the mark waits for the one writer (a batch of mail being handled). A line appended to this
file costs microseconds and outlives the process (it is in the kernel's page cache at
once), so the sender notes each accepted reply here first and marks the database after,
for several replies in one transaction; after a crash, `outbox.claim_due` reads the
notes and marks what the relay already has instead of sending it again.

A note is `<outbox id> <lease>`: it counts only for the claim that sent the reply. The
file is emptied whenever no reply is being sent. PostgreSQL has no single writer, and
senders may run on other machines, so there the mark follows each send directly (no log).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class SentLog:
    path: Path

    @classmethod
    def beside(cls, database_url: str) -> SentLog | None:
        """The log next to a SQLite database file (`privbot.db-sent`); None otherwise."""
        url = make_url(database_url)
        name = url.database or ""
        if (
            url.get_backend_name() != "sqlite"
            or name in ("", ":memory:")
            or name.startswith("file:")
        ):
            return None
        return cls(Path(name + "-sent"))

    def note(self, outbox_id: int, lease: datetime) -> None:
        """Record that the relay accepted this reply under this lease. Raises OSError."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{outbox_id} {lease.isoformat()}\n".encode())
        finally:
            os.close(fd)

    def noted(self) -> set[tuple[int, datetime]]:
        """Every (outbox id, lease) noted; a torn last line (a crash mid-write) is skipped."""
        try:
            text = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return set()
        out = set()
        for line in text.splitlines():
            ident, _, lease = line.partition(" ")
            try:
                out.add((int(ident), datetime.fromisoformat(lease)))
            except ValueError:
                continue
        return out

    def has_notes(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def clear(self) -> None:
        """Forget every note; call only while no reply is being sent."""
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path, 0)
