"""The IMAP watcher against a real Dovecot: IDLE, moves, restarts, UIDVALIDITY, failures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from privbot.app import App, data_folder
from privbot.channels.imap import ImapWatcher
from privbot.models import Message, Outgoing, Ticket
from privbot.serve import Service
from testing.apps import mail, make_app, wait_until
from testing.servers import CaptureRelay, Dovecot


def folder(dovecot: Dovecot, path: str) -> str:
    """A privbot folder setting ('privbot/processed') as the server names it."""
    client = dovecot.client()
    try:
        delimiter = client.list_folders(directory="", pattern="")[0][1]
    finally:
        client.logout()
    sep = delimiter.decode() if isinstance(delimiter, bytes) else str(delimiter)
    return path.replace("/", sep)


def count(app: App, model: type, *where: object) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def running(db_url: str, dovecot: Dovecot, relay: CaptureRelay) -> Iterator[tuple[App, Service]]:
    app = make_app(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url, retry_seconds="0.2")
    service = Service(app).start()
    yield app, service
    service.stop()
    app.close()


def test_every_human_answered_once_no_machine_answered(
    running: tuple[App, Service], dovecot: Dovecot, relay: CaptureRelay
) -> None:
    app, _ = running
    dovecot.deliver(mail(sender="erin@example.org", subject="Copy of my data", message_id="e1@x"))
    dovecot.deliver(
        mail(sender="erin@example.org", subject="Out of Office: Re: hello",
             headers={"Auto-Submitted": "auto-replied"})
    )  # fmt: skip
    dovecot.deliver(
        mail(sender="news@lists.example.com", subject="Weekly",
             headers={"List-Id": "<weekly.lists.example.com>"})
    )  # fmt: skip
    dovecot.deliver(
        mail(sender="MAILER-DAEMON@mx.example.net", subject="Undelivered Mail Returned to Sender"),
        mail_from="",
    )
    [reply] = relay.wait_for(1)
    assert reply["To"] == "erin@example.org"
    assert reply["In-Reply-To"] == "<e1@x>"
    assert reply["Auto-Submitted"] == "auto-replied"
    processed = folder(dovecot, "privbot/processed")
    wait_until(lambda: dovecot.folder_count(processed) == 4, what="all four moved")
    assert dovecot.folder_count("INBOX") == 0
    assert count(app, Message, Message.status == "screened") == 3
    relay_total = len(relay.messages)
    assert relay_total == 1  # the three machines got nothing


def test_watcher_recovers_when_the_server_restarts(
    running: tuple[App, Service], dovecot: Dovecot, relay: CaptureRelay
) -> None:
    dovecot.deliver(mail(sender="frank@example.org"))
    relay.wait_for(1)
    dovecot.restart()  # the watcher was idling on the old connection
    dovecot.deliver(mail(sender="grace@example.org"))
    replies = relay.wait_for(2, timeout=20)
    assert sorted(r["To"] for r in replies) == ["frank@example.org", "grace@example.org"]


def test_server_down_at_start_then_up(db_url: str, dovecot: Dovecot, relay: CaptureRelay) -> None:
    dovecot.deliver(mail(sender="heidi@example.org"))
    dovecot.stop()
    app = make_app(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url)
    service = Service(app).start()
    try:
        dovecot.start()
        [reply] = relay.wait_for(1, timeout=20)
        assert reply["To"] == "heidi@example.org"
    finally:
        service.stop()
        app.close()


def test_uidvalidity_change_neither_loses_nor_repeats(
    running: tuple[App, Service], dovecot: Dovecot, relay: CaptureRelay
) -> None:
    app, _ = running
    first = mail(sender="ivan@example.org", message_id="ivan1@x")
    dovecot.deliver(first)
    # Generous waits: a fresh checkout's first minutes are slow on a 2-core machine.
    relay.wait_for(1, timeout=40)
    processed = folder(dovecot, "privbot/processed")
    wait_until(lambda: dovecot.folder_count(processed) == 1, timeout=40, what="first moved")
    # The mailbox is rebuilt (a restore from backup): new UIDVALIDITY, and the old
    # message is back in the inbox beside a new one.
    dovecot.stop()
    inbox = next(Path(dovecot.mail_dir).rglob("Maildir"))
    for uidlist in inbox.rglob("dovecot-uidlist"):
        uidlist.unlink()
    for index in inbox.rglob("dovecot.index*"):
        index.unlink()
    dovecot.start()
    dovecot.deliver(first)
    dovecot.deliver(mail(sender="judy@example.org", message_id="judy1@x"))
    replies = relay.wait_for(2, timeout=40)
    wait_until(lambda: dovecot.folder_count("INBOX") == 0, timeout=40, what="inbox emptied")
    assert sorted(r["To"] for r in replies) == ["ivan@example.org", "judy@example.org"]
    assert count(app, Ticket) == 2


def test_repeatedly_failing_message_goes_to_the_failed_folder(
    db_url: str, dovecot: Dovecot, relay: CaptureRelay, tmp_path: Path
) -> None:
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "en" / "answer.txt.j2").write_text("{{ a_bug_in_a_template }}\n")
    app = make_app(
        db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url, replies_dir=str(replies),
        max_attempts="2",
    )  # fmt: skip
    service = Service(app).start()
    try:
        dovecot.deliver(mail(sender="kim@example.org"))
        failed = folder(dovecot, "privbot/failed")
        wait_until(lambda: dovecot.folder_count(failed) == 1, timeout=30, what="failed folder")
        assert dovecot.folder_count("INBOX") == 0
        with app.sessions() as s:
            row = s.scalars(select(Message)).one()
            assert row.status == "failed" and "a_bug_in_a_template" in (row.reason or "")
        assert count(app, Outgoing) == 0
    finally:
        service.stop()
        app.close()


def test_polls_where_the_server_has_no_idle(
    db_url: str, server_tmp_path: Path, relay: CaptureRelay
) -> None:
    # Dovecot advertises exactly this capability list after login: everything but IDLE.
    no_idle = "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS MOVE\n}\n"
    with Dovecot(server_tmp_path / "noidle", extra_config=no_idle) as dovecot:
        dovecot.start()
        client = dovecot.client()
        assert not client.has_capability("IDLE")
        client.logout()
        app = make_app(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url, poll_seconds="0.5")
        service = Service(app).start()
        try:
            dovecot.deliver(mail(sender="leo@example.org"))
            [reply] = relay.wait_for(1, timeout=15)
            assert reply["To"] == "leo@example.org"
        finally:
            service.stop()
            app.close()


def test_a_stop_after_the_watcher_has_ended_is_harmless(sqlite_url: str) -> None:
    """A stop racing the end of run(): run() had closed its wake-up pipe, and stop() wrote
    to the closed descriptor (EBADF at `privbot serve`'s SIGTERM, seen in CI) or, had its
    number been reused, to another file."""
    app = make_app(sqlite_url, imap_url="imap://support%40junocloud.me:secret@127.0.0.1:1/INBOX")
    try:
        watcher = ImapWatcher(app)
        watcher._stop.set()  # run() returns at once, as after a stop in its backoff wait
        watcher.run()
        watcher.stop()  # must neither raise nor write anywhere
        watcher.stop()
    finally:
        app.close()
