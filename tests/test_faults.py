"""Faults in the servers around privbot: it recovers by itself and misses nothing."""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from privbot.app import App, build_app
from privbot.channels.smtp import start_receiver
from privbot.config import load_settings
from privbot.models import Message
from privbot.serve import Service
from testing.apps import mail, make_app, wait_until
from testing.faults import CuttingProxy, PrivatePostgres
from testing.servers import CaptureRelay, Dovecot, free_port
from tests.conftest import unavailable


def _handled(app: App) -> int:
    with app.sessions() as s:
        return s.scalar(select(func.count(Message.id)).where(Message.status == "handled")) or 0


def _via(dovecot: Dovecot, port: int) -> str:
    return dovecot.imap_url().replace(f":{dovecot.imap_port}/", f":{port}/")


def test_connection_cut_mid_fetch_and_mid_idle(
    db_url: str, dovecot: Dovecot, relay: CaptureRelay
) -> None:
    proxy = CuttingProxy(dovecot.imap_port)
    app = make_app(db_url, imap_url=_via(dovecot, proxy.port), smtp_url=relay.url)
    service = Service(app).start()
    try:
        wait_until(lambda: proxy.cuts == 0 and app.settings.imap is not None, what="start")
        proxy.cut_on(b"FETCH", times=2)  # the next two FETCH commands die on the wire
        for i in range(20):
            dovecot.deliver(mail(sender=f"cut{i}@example.org", message_id=f"cut{i}@x"))
        relay.wait_for(20, timeout=30)
        assert proxy.cuts == 2
        proxy.cut_all()  # and once more while it idles
        dovecot.deliver(mail(sender="after-cut@example.org", message_id="after@x"))
        replies = relay.wait_for(21, timeout=30)
        assert len({r["In-Reply-To"] for r in replies}) == 21 == len(replies)
        assert dovecot.folder_count("INBOX") == 0
    finally:
        service.stop()
        app.close()
        proxy.stop()


def test_login_refused_for_a_while(db_url: str, dovecot: Dovecot, relay: CaptureRelay) -> None:
    users = dovecot.directory / "users"
    good = users.read_text()
    users.write_text(good.replace(":{PLAIN}secret:", ":{PLAIN}changed:"))
    dovecot.deliver(mail(sender="patient@example.org"))
    app = make_app(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url)
    service = Service(app).start()
    try:
        time.sleep(2)  # it keeps being refused, and keeps trying
        assert relay.messages == []
        users.write_text(good)
        restored = time.monotonic()
        [reply] = relay.wait_for(1, timeout=20)
        assert reply["To"] == "patient@example.org"
        print(f"\nrecovered {time.monotonic() - restored:.1f}s after the login worked again")
    finally:
        service.stop()
        app.close()


@pytest.mark.parametrize("code", [421, 451])
def test_relay_temporary_refusals_are_retried(
    db_url: str, dovecot: Dovecot, relay: CaptureRelay, code: int
) -> None:
    relay.fail_with(code, "try again later", times=3)
    app = make_app(db_url, imap_url=dovecot.imap_url(), smtp_url=relay.url, retry_seconds="0.1")
    service = Service(app).start()
    try:
        dovecot.deliver(mail(sender="retry@example.org"))
        relay.wait_for(1, timeout=20)
        time.sleep(0.5)
        assert len(relay.messages) == 1  # delivered once, after the refusals
    finally:
        service.stop()
        app.close()


def test_postgresql_down_under_load(
    server_tmp_path: Path, dovecot: Dovecot, relay: CaptureRelay
) -> None:
    reason = PrivatePostgres.available()
    if reason:
        unavailable(reason)
    pg = PrivatePostgres(server_tmp_path / "pg")
    pg.init()
    pg.start()
    smtp_port = free_port()
    app = make_app(
        pg.url, imap_url=dovecot.imap_url(), smtp_url=relay.url,
        listen=f"127.0.0.1:{smtp_port}", retry_seconds="0.2",
    )  # fmt: skip
    service = Service(app).start()
    try:
        waiting = [mail(sender=f"load{i}@example.org", message_id=f"load{i}@x") for i in range(30)]
        refused: list[bytes] = []
        for i, raw in enumerate(waiting):
            if i == 10:
                pg.stop()  # the database goes away in the middle of the burst
                for j in range(5):  # mail by IMAP meanwhile must stay in the mailbox
                    dovecot.deliver(mail(sender=f"imap{j}@example.org", message_id=f"imap{j}@x"))
            if i == 20:
                time.sleep(1)
                assert dovecot.folder_count("INBOX") == 5
                pg.start()
            if not _send(smtp_port, raw):
                refused.append(raw)  # 451: the sending MTA keeps it and tries again later
        assert refused  # 451s were given while the database was down
        for raw in refused:
            _send_until_accepted(smtp_port, raw)
        relay.wait_for(35, timeout=60)
        replies = relay.messages
        assert len({r["In-Reply-To"] for r in replies}) == 35 == len(replies)
        wait_until(lambda: dovecot.folder_count("INBOX") == 0, what="mailbox drained")
    finally:
        service.stop()
        app.close()
        pg.stop()


def _send(port: int, raw: bytes) -> bool:
    """One delivery attempt: True on 250, False on 451 (anything else fails the test)."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # smtplib sends bytes as given
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("load@example.org", ["support@junocloud.me"], raw)
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 451, exc
        return False
    return True


def _send_until_accepted(port: int, raw: bytes) -> None:
    """Deliver like an MTA: on 451, wait and try again."""
    for _ in range(100):
        if _send(port, raw):
            return
        time.sleep(0.2)
    raise AssertionError("never accepted")


def test_read_only_sqlite_refuses_with_451(tmp_path: Path) -> None:
    path = tmp_path / "privbot.db"
    make_app(f"sqlite:///{path}").close()  # created and migrated while writable
    port = free_port()
    settings = load_settings(
        {
            "PRIVBOT_DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true",
            "PRIVBOT_LISTEN": f"127.0.0.1:{port}",
        }
    )
    app = build_app(settings, migrate=False)
    controller = start_receiver(app)
    try:
        with (
            smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp,
            pytest.raises(smtplib.SMTPDataError) as caught,
        ):
            smtp.sendmail("a@example.org", ["support@junocloud.me"], mail())
        assert caught.value.smtp_code == 451
    finally:
        controller.stop()
        app.close()


@pytest.fixture
def tiny_disk(server_tmp_path: Path) -> Iterator[Path]:
    """A 3 MB filesystem of its own, to fill up for real."""
    mount = server_tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        unavailable(f"cannot mount a small tmpfs for the disk-full test: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_refuses_with_451_and_acknowledges_only_what_was_stored(
    tiny_disk: Path,
) -> None:
    port = free_port()
    app = make_app(f"sqlite:///{tiny_disk / 'privbot.db'}", listen=f"127.0.0.1:{port}")
    controller = start_receiver(app)
    filler = tiny_disk / "filler"
    try:
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        filler.write_bytes(b"\0" * max(free - 400_000, 0))  # leave room for a few messages
        accepted, refused = [], 0
        for i in range(40):
            raw = mail(sender=f"full{i}@example.org", message_id=f"full{i}@x",
                       body=("filling the disk\n" * 4000) + str(i))  # fmt: skip
            if _send(port, raw):
                accepted.append(f"full{i}@x")
            else:
                refused += 1
        assert accepted and refused, (len(accepted), refused)
        with app.sessions() as s:
            stored = set(s.scalars(select(Message.message_id)).all())
        assert set(accepted) <= stored  # every 250 was a stored message
        filler.unlink()  # space again: mail is taken again
        assert _send(port, mail(sender="after@example.org", message_id="after@x"))
    finally:
        controller.stop()
        app.close()
