"""Debug logging never writes mail: with every logger at DEBUG, mail taken over SMTP, from
IMAP and from a file, its reply sent through the outbox and a chat through the web API leave
no body, chat text or reply text in any log record, nor does a database error."""

from __future__ import annotations

import logging
import smtplib
import threading
import traceback

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App
from privbot.channels.imap import ImapWatcher
from privbot.channels.smtp import start_receiver
from privbot.models import Message, MessageStatus
from privbot.outbox import sender
from privbot.web import create_app
from testing.apps import mail, make_app, send_one, wait_until
from testing.servers import CaptureRelay, Dovecot, free_port

BODY = "The quokka marmalade arrived on Tuesday, parcel 4417."
SUBJECT = "Lantern fjord 9031"
CHAT = "Please unsubscribe me from your newsletter. Walrus accordion 5520."


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it: message, arguments, traceback, stack."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root: every library's loggers
    caplog.set_level(logging.DEBUG, logger="privbot")


def _lines(text: str) -> list[str]:
    """The lines of a text long enough to be its own words, not a common phrase."""
    return [line.strip(" >") for line in text.splitlines() if len(line.strip(" >")) >= 24]


def _plain(message: object) -> str:
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    assert body is not None
    return str(body.get_content())


def _chat(client: TestClient, message: str, session: str | None = None) -> dict[str, object]:
    response = client.post("/api/v1/chat", json={"message": message, "session": session})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _assert_absent(log: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in log, f"the log holds {secret!r}"


def test_mail_chat_and_replies_never_reach_the_log_at_debug(
    sqlite_url: str, relay: CaptureRelay, caplog: pytest.LogCaptureFixture
) -> None:
    _debug_everywhere(caplog)
    port = free_port()
    app = make_app(sqlite_url, listen=f"127.0.0.1:{port}", smtp_url=relay.url,
                   secret_key="k", chat_rate="100/60")  # fmt: skip
    try:
        # Over SMTP, into privbot's own receiver; then processed as `serve` does.
        receiver = start_receiver(app)
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("alice@example.org", ["support@junocloud.me"], mail(
                    sender="alice@example.org", subject=SUBJECT,
                    body=f"Hello,\n\nwhat do you store about me? {BODY}\n\nAlice\n"))  # fmt: skip
        finally:
            receiver.stop()
        pipeline.process_pending(app)
        # From a file (privbot ingest), an opt-out.
        pipeline.receive(app, mail(sender="bob@example.org", subject=SUBJECT,
                                   body=f"Unsubscribe me from marketing. {BODY}\n"),
                         source="file")  # fmt: skip
        # The chat: a question, then a request and the address it needs (a link is mailed).
        with TestClient(create_app(app)) as client:
            question = _chat(client, f"Do you use cookies? {CHAT}")
            request = _chat(client, CHAT)
            assert request["waiting_for"] == "address"
            link = _chat(client, "carol@example.org", str(request["session"]))
            assert link["waiting_for"] == "confirmation"
        # Everything queued goes out through the outbox.
        assert app.settings.smtp is not None
        mailer = sender.Mailer(app.settings.smtp, timeout=5)
        while send_one(app, mailer):
            pass
        mailer.close()
        sent = relay.wait_for(3)
        with app.sessions() as s:
            statuses = s.scalars(select(Message.status)).all()
        assert sorted(statuses) == ["handled", "handled"]
    finally:
        app.close()

    replies = [line for message in sent for line in _lines(_plain(message))]
    chat_replies = _lines(str(question["reply"])) + _lines(str(request["reply"]))
    assert replies and chat_replies
    log = _log_text(caplog)
    # The capture really was at DEBUG, privbot's and the mail libraries' records included.
    names = {r.name for r in caplog.records}
    assert {"privbot.channels.smtp", "mail.log"} <= names, names
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    _assert_absent(log, [BODY, "quokka", SUBJECT, CHAT, "Walrus", *replies, *chat_replies])


def test_mail_fetched_over_imap_never_reaches_the_log_at_debug(
    dovecot: Dovecot, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _debug_everywhere(caplog)
    dovecot.deliver(mail(subject=SUBJECT, body=f"Do you sell my data? {BODY}\n"))
    app = make_app(sqlite_url, imap_url=dovecot.imap_url())
    watcher = ImapWatcher(app)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:

        def processed() -> int:
            with app.sessions() as s:
                return s.scalar(select(func.count(Message.id)).where(
                    Message.status != MessageStatus.RECEIVED)) or 0  # fmt: skip

        wait_until(lambda: processed() == 1, what="the fetched mail to be processed")
    finally:
        watcher.stop()
        thread.join(timeout=30)
        app.close()
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # captured at DEBUG
    _assert_absent(_log_text(caplog), [BODY, "quokka", SUBJECT])


def test_a_database_error_is_reported_without_what_the_visitor_wrote(sqlite_url: str) -> None:
    """What the server logs for a failed request (its traceback) must not carry the values
    of the statement that failed: here, the chat text being stored."""
    app: App = make_app(sqlite_url, secret_key="k")
    try:
        with app.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER full BEFORE INSERT ON chat_requests "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        with TestClient(create_app(app)) as client, pytest.raises(Exception) as caught:
            client.post("/api/v1/chat", json={"message": CHAT})
        reported = "".join(traceback.format_exception(caught.value))
        assert "database or disk is full" in reported  # the error itself is reported
        _assert_absent(reported, [CHAT, "Walrus"])
    finally:
        app.close()


def test_the_content_loggers_follow_a_quiet_root_but_never_write_debug() -> None:
    """`--log-level warning` quiets aiosmtpd's and imapclient's INFO lines too; at DEBUG,
    theirs (which carry mail), their children's included, are still dropped."""
    from privbot.app import CONTENT_LOGGERS, quiet_content_loggers

    root = logging.getLogger()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    before = root.level, {n: logging.getLogger(n).level for n in CONTENT_LOGGERS}
    root.addHandler(handler)
    try:
        for level in (logging.WARNING, logging.DEBUG):
            root.setLevel(level)
            for name in CONTENT_LOGGERS:
                logging.getLogger(name).setLevel(logging.NOTSET)
            quiet_content_loggers()  # as each App does, after the CLI set the root's level
            for name in CONTENT_LOGGERS:
                for logger in (logging.getLogger(name), logging.getLogger(f"{name}.child")):
                    logger.debug("DATA line: the mail itself")
                    logger.info("connection from 127.0.0.1")
        assert [(r.name, r.levelname) for r in seen] == [
            (n, "INFO") for name in CONTENT_LOGGERS for n in (name, f"{name}.child")
        ]
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        for name, old in before[1].items():
            logging.getLogger(name).setLevel(old)
