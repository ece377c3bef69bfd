"""The real test servers work: everything else stands on these fixtures."""

from __future__ import annotations

import email.policy
import os
import select
import smtplib
import socket
import time
from email.message import EmailMessage
from pathlib import Path

import imapclient
import psycopg
import pytest
import sqlalchemy as sa

from testing.servers import CaptureRelay, Dovecot, PostgresDatabase, PymapServer, free_port


def make_message(n: int, to: str = "support@junocloud.me") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"customer{n}@example.org"
    msg["To"] = to
    msg["Subject"] = f"Test message {n}"
    msg["Message-ID"] = f"<test-{n}@example.org>"
    msg.set_content(f"Hello, this is message {n}.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


# -- Dovecot ----------------------------------------------------------------------------


def test_dovecot_lmtp_delivery_shows_in_inbox(dovecot: Dovecot) -> None:
    for n in range(3):
        dovecot.deliver(make_message(n))
    client = dovecot.client()
    try:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        assert len(uids) == 3
        fetched = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        subjects = sorted(
            data[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip() for data in fetched.values()
        )
        assert subjects == [f"Subject: Test message {n}" for n in range(3)]
    finally:
        client.logout()
    assert dovecot.folder_count("INBOX") == 3
    assert b"message 2." in dovecot.folder_messages("INBOX")[2]
    assert dovecot.folder_messages("Does-Not-Exist") == []
    assert dovecot.folder_count("Does-Not-Exist") == 0


def test_dovecot_imap_url_is_percent_encoded(dovecot: Dovecot) -> None:
    url = dovecot.imap_url("Privbot/Done")
    assert url == f"imap://support%40junocloud.me:secret@127.0.0.1:{dovecot.imap_port}/Privbot/Done"
    assert dovecot.host == "127.0.0.1"
    assert dovecot.lmtp_port != dovecot.imap_port


def test_dovecot_idle_wakes_after_delivery(dovecot: Dovecot) -> None:
    client = dovecot.client()
    try:
        client.select_folder("INBOX")
        client.idle()
        started = time.monotonic()
        dovecot.deliver(make_message(1))
        # select() then idle_done(): the robust pattern (idle_check() can read half a line).
        readable, _, _ = select.select([client.socket()], [], [], 3.0)
        elapsed = time.monotonic() - started
        responses = client.idle_done()[1]
        assert readable, "IDLE did not wake within 3 s of an LMTP delivery"
        assert elapsed < 3.0
        assert any(b"EXISTS" in r for r in responses) or client.search("ALL")
    finally:
        client.logout()


def test_dovecot_restart_keeps_mail_and_ports(dovecot: Dovecot) -> None:
    dovecot.deliver(make_message(1))
    dovecot.deliver(make_message(2))
    imap_port, lmtp_port = dovecot.imap_port, dovecot.lmtp_port
    dovecot.restart()
    assert dovecot.is_running
    assert (dovecot.imap_port, dovecot.lmtp_port) == (imap_port, lmtp_port)
    assert dovecot.folder_count("INBOX") == 2
    dovecot.deliver(make_message(3))  # the LMTP connection is re-established
    assert dovecot.folder_count("INBOX") == 3


def test_dovecot_stop_makes_connections_fail(dovecot: Dovecot) -> None:
    client = dovecot.client()
    dovecot.stop()
    assert not dovecot.is_running
    with pytest.raises(OSError):
        socket.create_connection((dovecot.host, dovecot.imap_port), timeout=1).close()
    with pytest.raises((OSError, imapclient.exceptions.IMAPClientError)):
        client.noop()
    with pytest.raises(OSError):
        dovecot.client()


def test_dovecot_restart_refuses_a_taken_port(dovecot: Dovecot) -> None:
    dovecot.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", dovecot.imap_port))
        squatter.listen()
        with pytest.raises(RuntimeError, match="already in use"):
            dovecot.start()
    assert not dovecot.is_running
    dovecot.start()
    assert dovecot.folder_count() == 0


def test_dovecot_reports_a_failed_start(server_tmp_path: Path) -> None:
    server = Dovecot(server_tmp_path / "broken")
    server.start()
    server.stop()
    server.config_path.write_text(server.config_path.read_text() + "\nno_such_setting = 1\n")
    with pytest.raises(RuntimeError, match=r"(?s)did not start \(exited.*no_such_setting"):
        server.start()
    assert not server.is_running


def test_dovecot_refuses_unreachable_directory(tmp_path: Path) -> None:
    # pytest's tmp dirs are 0700: the dovecot user could not reach the mail.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    server = Dovecot(private / "dovecot")
    if os.geteuid() != 0:
        pytest.skip("only relevant when running as root")
    with pytest.raises(RuntimeError, match="not reachable by the dovecot user"):
        server.start()


# -- CaptureRelay -----------------------------------------------------------------------


def send(relay: CaptureRelay, rcpts: list[str], n: int = 1) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(relay.host, relay.port, timeout=5) as smtp:
        return smtp.sendmail("bot@junocloud.me", rcpts, make_message(n, to=", ".join(rcpts)))


def test_relay_captures_message(relay: CaptureRelay) -> None:
    assert relay.url == f"smtp://127.0.0.1:{relay.port}"
    send(relay, ["alice@example.org", "bob@example.org"])
    [message] = relay.wait_for(1, timeout=2)
    assert message["Subject"] == "Test message 1"
    assert message.get_content() == "Hello, this is message 1.\n"
    [envelope] = relay.envelopes
    assert envelope.mail_from == "bot@junocloud.me"
    assert envelope.rcpt_tos == ["alice@example.org", "bob@example.org"]
    assert b"Subject: Test message 1" in envelope.raw


def test_relay_wait_for_times_out_with_what_it_has(relay: CaptureRelay) -> None:
    send(relay, ["alice@example.org"])
    with pytest.raises(AssertionError, match="captured 1 message"):
        relay.wait_for(2, timeout=0.2)


def test_relay_fail_with_once_then_success(relay: CaptureRelay) -> None:
    relay.fail_with(451, "4.3.0 Try again later", times=1)
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(relay, ["alice@example.org"])
    assert info.value.smtp_code == 451
    assert relay.messages == []
    send(relay, ["alice@example.org"], n=2)
    assert [m["Subject"] for m in relay.wait_for(1, timeout=2)] == ["Test message 2"]


def test_relay_fail_with_until_cleared(relay: CaptureRelay) -> None:
    relay.fail_with(554, "5.7.1 Rejected")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError):
            send(relay, ["alice@example.org"])
    relay.clear_faults()
    send(relay, ["alice@example.org"])
    assert len(relay.wait_for(1, timeout=2)) == 1


def test_relay_reject_rcpt_only_that_address(relay: CaptureRelay) -> None:
    relay.reject_rcpt("gone@example.org", 550, "5.1.1 No such user")
    refused = send(relay, ["alice@example.org", "gone@example.org"])
    assert refused == {"gone@example.org": (550, b"5.1.1 No such user")}
    assert relay.wait_for(1, timeout=2)
    assert relay.envelopes[0].rcpt_tos == ["alice@example.org"]
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(relay, ["gone@example.org"])
    assert info.value.recipients["gone@example.org"][0] == 550


def test_relay_stop_and_start_on_same_port(relay: CaptureRelay) -> None:
    port = relay.port
    send(relay, ["alice@example.org"])
    relay.stop()
    assert not relay.is_running
    with pytest.raises(OSError):
        send(relay, ["alice@example.org"])
    relay.start()
    assert relay.port == port
    send(relay, ["alice@example.org"], n=2)
    assert [m["Subject"] for m in relay.wait_for(2, timeout=2)] == [
        "Test message 1",
        "Test message 2",
    ]


def test_relay_with_auth() -> None:
    with CaptureRelay(auth=("bot@junocloud.me", "pw")) as relay:
        assert relay.url == f"smtp://bot%40junocloud.me:pw@127.0.0.1:{relay.port}"
        with smtplib.SMTP(relay.host, relay.port, timeout=5) as smtp:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("bot@junocloud.me", "wrong")
            smtp.login("bot@junocloud.me", "pw")
            smtp.sendmail("bot@junocloud.me", ["a@example.org"], make_message(1))
        assert len(relay.wait_for(1, timeout=2)) == 1
        # smtplib tries every offered mechanism (PLAIN, then LOGIN) before giving up.
        assert relay.auth_attempts[-1] == ("bot@junocloud.me", True)
        assert not any(ok for _, ok in relay.auth_attempts[:-1])


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- Databases --------------------------------------------------------------------------


def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://root@127.0.0.1:5432/privbot_test_")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar_one()
                == 0
            )
            conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY, v text)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 'x')"))
            assert conn.execute(sa.text("SELECT v FROM t")).scalar_one() == "x"
            conn.execute(sa.text("DROP TABLE t"))
    finally:
        engine.dispose()


def test_postgres_database_drop_removes_it(postgres_database: PostgresDatabase) -> None:
    session = psycopg.connect(postgres_database.conninfo)  # must not block the drop
    postgres_database.drop()
    session.close()
    with psycopg.connect(postgres_database.admin_conninfo) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [postgres_database.name]
        ).fetchone()
        assert row is None
    postgres_database.drop()  # idempotent


def test_db_url(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_corpora(corpora: Path) -> None:
    assert corpora.is_dir()
    assert any(corpora.iterdir())


# -- pymap ------------------------------------------------------------------------------


def test_pymap_append_and_fetch(pymap_server: PymapServer) -> None:
    assert pymap_server.imap_url() == (
        f"imap://support%40junocloud.me:secret@127.0.0.1:{pymap_server.imap_port}/INBOX"
    )
    pymap_server.append(make_message(7))
    [raw] = pymap_server.folder_messages("INBOX")
    assert b"Subject: Test message 7" in raw
    assert pymap_server.folder_messages("Nope") == []
