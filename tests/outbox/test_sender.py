"""The outbox against a real SMTP relay: retries, permanent failures, leases, no double send."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select, update

from privbot import pipeline
from privbot.app import App
from privbot.models import Event, Outgoing, utcnow
from privbot.outbox import sender
from privbot.staff import actions
from testing.apps import claim_next, mail, make_app, send_one, wait_until
from testing.servers import CaptureRelay


def _row(app: App, outbox_id: int) -> Outgoing:
    with app.sessions() as s:
        row = s.get(Outgoing, outbox_id)
        assert row is not None
        return row


def _queue(app: App, **kw: str) -> int:
    out = pipeline.receive(app, mail(**kw), source="file")
    assert out.reply is not None
    return out.reply


def _mailer(app: App) -> sender.Mailer:
    assert app.settings.smtp is not None
    return sender.Mailer(app.settings.smtp, timeout=5)


def test_reply_is_sent_once_and_marked(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    reply_id = _queue(app, sender="carol@example.org")
    mailer = _mailer(app)
    assert send_one(app, mailer) is True
    assert send_one(app, mailer) is False  # nothing else due: no second copy
    mailer.close()
    [captured] = relay.wait_for(1)
    assert captured["To"] == "carol@example.org"
    assert relay.envelopes[0].rcpt_tos == ["carol@example.org"]
    row = _row(app, reply_id)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert captured["Message-ID"] == f"<{row.message_id}>"


def test_relay_down_then_back(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url, retry_seconds="0.1")
    reply_id = _queue(app)
    relay.stop()
    mailer = _mailer(app)
    send_one(app, mailer)
    row = _row(app, reply_id)
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error and "unreachable" in row.last_error
    assert row.next_attempt_at > utcnow() - timedelta(seconds=1)
    relay.start()
    wait_until(lambda: send_one(app, mailer) or _row(app, reply_id).status == "sent",
               what="the retry")  # fmt: skip
    wait_until(lambda: _row(app, reply_id).status == "sent", what="sent after the relay is back")
    assert len(relay.wait_for(1)) == 1
    mailer.close()


def test_temporary_refusal_is_retried(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url, retry_seconds="0.05")
    reply_id = _queue(app)
    relay.fail_with(451, "4.3.0 try later", times=2)
    mailer = _mailer(app)
    wait_until(lambda: (send_one(app, mailer), _row(app, reply_id).status == "sent")[1],
               what="delivery after two 451s")  # fmt: skip
    mailer.close()
    assert _row(app, reply_id).attempts == 3
    assert len(relay.messages) == 1


def test_permanent_refusal_is_failed_and_visible(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    bad = _queue(app, sender="gone@example.org")
    good = _queue(app, sender="here@example.org")
    relay.reject_rcpt("gone@example.org", 550, "5.1.1 no such user")
    mailer = _mailer(app)
    while send_one(app, mailer):
        pass
    mailer.close()
    failed = _row(app, bad)
    assert failed.status == "failed" and "550" in (failed.last_error or "")
    assert _row(app, good).status == "sent"
    with app.sessions() as s:
        events = s.scalars(select(Event).where(Event.kind == "reply_failed")).all()
        assert len(events) == 1 and events[0].ticket_id == failed.ticket_id


def test_expired_lease_is_resent_with_the_same_message_id(db_url: str, relay: CaptureRelay) -> None:
    """A sender that died mid-send: after the lease, the same mail goes out (same Message-ID)."""
    app = make_app(db_url, smtp_url=relay.url)
    reply_id = _queue(app)
    claimed = claim_next(app)
    assert claimed is not None and claimed.id == reply_id
    assert claim_next(app) is None  # leased: nobody else takes it
    with app.sessions.begin() as s:
        s.execute(
            update(Outgoing)
            .where(Outgoing.id == reply_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )
    mailer = _mailer(app)
    assert send_one(app, mailer)
    mailer.close()
    [captured] = relay.wait_for(1)
    assert captured["Message-ID"] == f"<{claimed.message_id}>"
    assert _row(app, reply_id).status == "sent"


def test_concurrent_senders_never_send_twice(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    ids = [_queue(app, sender=f"user{i}@example.org") for i in range(30)]

    def drain() -> None:
        mailer = _mailer(app)
        while send_one(app, mailer):
            pass
        mailer.close()

    workers = [threading.Thread(target=drain) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    relay.wait_for(30)
    recipients = [e.rcpt_tos[0] for e in relay.envelopes]
    assert sorted(recipients) == sorted(f"user{i}@example.org" for i in range(30))
    assert all(_row(app, i).status == "sent" for i in ids)


def _die_after_the_relay_took_it(app: App, relay: CaptureRelay) -> tuple[Outgoing, object]:
    """A sender that claimed a reply, got the relay's 250, noted it and died before marking.
    Its lease is made to have run out already (as it would have by the next claim)."""
    claimed = claim_next(app)
    assert claimed is not None
    lease = utcnow() - timedelta(seconds=1)
    with app.sessions.begin() as s:
        s.execute(update(Outgoing).where(Outgoing.id == claimed.id).values(lease_until=lease))
    mailer = _mailer(app)
    mailer.send(app.settings.address, claimed.to_addr, claimed.raw)
    mailer.close()
    relay.wait_for(1)
    return claimed, lease


def test_a_reply_noted_before_a_crash_is_marked_not_sent_again(
    sqlite_url: str, relay: CaptureRelay
) -> None:
    app = make_app(sqlite_url, smtp_url=relay.url)
    assert app.sent_log is not None and app.sent_log.path.name == "privbot.db-sent"
    reply_id = _queue(app)
    claimed, lease = _die_after_the_relay_took_it(app, relay)
    app.sent_log.note(claimed.id, lease)  # type: ignore[arg-type]

    mailer = _mailer(app)
    assert send_one(app, mailer) is False  # nothing left to send
    mailer.close()
    assert len(relay.envelopes) == 1  # the one copy the dead sender delivered
    row = _row(app, reply_id)
    assert row.status == "sent" and row.sent_at is not None
    with app.sessions() as s:
        [event] = s.scalars(select(Event).where(Event.kind == "reply_sent")).all()
    assert event.detail["recovered"] and event.detail["outbox"] == reply_id
    assert not app.sent_log.has_notes()  # nothing is being sent: the notes are forgotten


def test_a_note_from_an_earlier_claim_does_not_count(sqlite_url: str, relay: CaptureRelay) -> None:
    app = make_app(sqlite_url, smtp_url=relay.url)
    assert app.sent_log is not None
    reply_id = _queue(app)
    claimed, lease = _die_after_the_relay_took_it(app, relay)
    app.sent_log.note(claimed.id, lease - timedelta(minutes=5))  # type: ignore[operator]
    mailer = _mailer(app)
    assert send_one(app, mailer) is True  # not known to be accepted: sent again
    mailer.close()
    relay.wait_for(2)
    assert [e.rcpt_tos for e in relay.envelopes] == [[claimed.to_addr]] * 2
    assert _row(app, reply_id).status == "sent"


def test_notes_are_kept_while_a_reply_is_being_sent(sqlite_url: str, relay: CaptureRelay) -> None:
    app = make_app(sqlite_url, smtp_url=relay.url)
    assert app.sent_log is not None
    _queue(app, sender="one@example.org")
    _queue(app, sender="two@example.org")
    held = claim_next(app)  # another sender, alive, holds this one
    assert held is not None and held.lease_until is not None
    app.sent_log.note(held.id, held.lease_until)
    assert send_one(app, _mailer(app)) is True
    assert app.sent_log.has_notes()  # still needed should that sender die now
    assert _row(app, held.id).status == "sending"


def test_sent_replies_are_noted_then_marked_together(sqlite_url: str, relay: CaptureRelay) -> None:
    app = make_app(sqlite_url, smtp_url=relay.url)
    assert app.sent_log is not None
    ids = [_queue(app, sender=f"p{i}@example.org") for i in range(4)]
    assert sender.send_due(app, _mailer(app)) == 4
    relay.wait_for(4)
    assert {i for i, _ in app.sent_log.noted()} == set(ids)  # each noted when accepted
    assert all(_row(app, i).status == "sent" for i in ids)


def test_only_a_sqlite_file_has_a_sent_log(pg_url: str, tmp_path: object) -> None:
    app = make_app(pg_url)
    try:
        assert app.sent_log is None  # PostgreSQL: marked right after each send
    finally:
        app.close()
    memory = make_app("sqlite://")
    try:
        assert memory.sent_log is None
    finally:
        memory.close()


# -- one odd reply in a batch ----------------------------------------------------------------

ODD = "jörg@exämple.de"  # a non-ASCII local part and domain: SMTPUTF8 (RFC 6531) or nothing


def _utf8_mail(sender_addr: str) -> bytes:
    """A mail as an SMTPUTF8 client writes it: the address as UTF-8 in From (RFC 6532)."""
    msg = EmailMessage(policy=email.policy.SMTPUTF8)
    msg["From"] = sender_addr
    msg["To"] = "support@junocloud.me"
    msg["Subject"] = "Meine Daten"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = "<utf8.1@exämple.de>"
    msg.set_content("Hallo,\n\nwas speichern Sie über mich?\n\nJörg\n")
    return msg.as_bytes()


def _ten_with_one_odd(app: App) -> int:
    """Ten replies due together, the fifth to ODD (whose id is returned): one batch
    (sender.BATCH) takes them all."""
    odd = 0
    for i in range(10):
        if i == 4:
            out = pipeline.receive(app, _utf8_mail(ODD), source="file")
            assert out.reply is not None
            odd = out.reply
        else:
            _queue(app, sender=f"n{i}@example.org")
    return odd


def _statuses(app: App) -> dict[int, str]:
    with app.sessions() as s:
        return {row.id: row.status for row in s.scalars(select(Outgoing))}


def _failed_events(app: App) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == "reply_failed")))


def test_a_non_ascii_address_is_sent_with_smtputf8_and_so_is_its_batch(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    odd = _ten_with_one_odd(app)
    mailer = _mailer(app)
    assert sender.send_due(app, mailer) == 10  # one batch, and nothing escaped it
    mailer.close()
    relay.wait_for(10)
    assert set(_statuses(app).values()) == {"sent"}
    assert sorted(e.rcpt_tos[0] for e in relay.envelopes) == sorted(
        [ODD] + [f"n{i}@example.org" for i in range(10) if i != 4]
    )
    [utf8] = [e for e in relay.envelopes if e.rcpt_tos == [ODD]]
    assert "SMTPUTF8" in utf8.mail_options
    # ASCII mail asks nothing more of the relay than before
    assert all("SMTPUTF8" not in e.mail_options for e in relay.envelopes if e is not utf8)
    # RFC 6532: the address as UTF-8 in To, not an RFC 2047 encoded word (not allowed there)
    head = utf8.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    [to_line] = [line for line in head.split("\r\n") if line.startswith("To:")]
    assert to_line == f"To: {ODD}"
    parsed = email.message_from_bytes(utf8.raw, policy=email.policy.default)
    assert str(parsed["To"]) == ODD
    assert parsed["Message-ID"] == f"<{_row(app, odd).message_id}>"


def test_a_relay_without_smtputf8_fails_that_reply_alone_with_the_reason(db_url: str) -> None:
    with CaptureRelay(smtputf8=False) as relay:
        app = make_app(db_url, smtp_url=relay.url)
        odd = _ten_with_one_odd(app)
        mailer = _mailer(app)
        assert sender.send_due(app, mailer) == 10
        mailer.close()
        relay.wait_for(9)
        others = [f"n{i}@example.org" for i in range(10) if i != 4]
        assert sorted(e.rcpt_tos[0] for e in relay.envelopes) == sorted(others)
    statuses = _statuses(app)
    assert statuses.pop(odd) == "failed"
    assert set(statuses.values()) == {"sent"}  # nothing left in `sending`
    row = _row(app, odd)
    assert row.last_error == f"the relay does not offer SMTPUTF8, needed for {ODD}"
    [event] = _failed_events(app)
    assert event.ticket_id == row.ticket_id and event.detail["error"] == row.last_error


def test_an_unexpected_error_in_one_send_fails_that_reply_alone(
    db_url: str, relay: CaptureRelay
) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    ids = [_queue(app, sender=f"n{i}@example.org") for i in range(10)]
    # A stored address that would smuggle an SMTP command: smtplib passes it on unparsed and
    # its guard refuses the line break with a ValueError (neither SMTPException nor OSError),
    # after the relay accepted MAIL FROM: the connection is left mid-transaction too.
    smuggler = "<>\r\nRCPT TO:<victim@example.net>"
    with app.sessions.begin() as s:
        s.execute(update(Outgoing).where(Outgoing.id == ids[4]).values(to_addr=smuggler))
    mailer = _mailer(app)
    assert sender.send_due(app, mailer) == 10
    mailer.close()
    relay.wait_for(9)
    recipients = sorted(r for e in relay.envelopes for r in e.rcpt_tos)
    assert recipients == sorted(f"n{i}@example.org" for i in range(10) if i != 4)
    statuses = _statuses(app)
    assert statuses.pop(ids[4]) == "failed"
    assert set(statuses.values()) == {"sent"}
    row = _row(app, ids[4])
    assert row.last_error is not None and row.last_error.startswith("cannot be sent: ValueError")
    [event] = _failed_events(app)
    assert event.ticket_id == row.ticket_id and event.detail["error"] == row.last_error


def test_automatic_replies_have_the_null_envelope_sender_staff_replies_ours(
    db_url: str, relay: CaptureRelay
) -> None:
    # RFC 3834 3.3: bounces of an automatic reply must go nowhere (no bounce ping-pong, no
    # backscatter to our mailbox); a person's reply may bounce back to us, as any mail.
    app = make_app(db_url, smtp_url=relay.url)
    auto = _queue(app, sender="dora@example.org")
    ticket = _row(app, auto).ticket_id
    assert ticket is not None
    staff = actions.send_reply(app, ticket, "Done.", actor="ada@junocloud.me")
    mailer = _mailer(app)
    while send_one(app, mailer):
        pass
    mailer.close()
    relay.wait_for(2)
    assert {_row(app, i).status for i in (auto, staff)} == {"sent"}
    by_id = {m["Message-ID"]: e for m, e in zip(relay.messages, relay.envelopes, strict=True)}
    assert by_id[f"<{_row(app, auto).message_id}>"].mail_from == "<>"
    assert by_id[f"<{_row(app, staff).message_id}>"].mail_from == "support@junocloud.me"


def test_a_long_subject_passes_a_strict_relay(db_url: str, relay: CaptureRelay) -> None:
    # The capture relay, like strict relays, answers a line over 998 characters with 500.
    app = make_app(db_url, smtp_url=relay.url)
    subject = "Auskunft" + "-bitte" * 250  # one word of 1,508 characters: nowhere to fold it
    out = pipeline.receive(app, mail(sender="max@example.de", subject=subject), source="file")
    assert out.reply is not None
    mailer = _mailer(app)
    assert send_one(app, mailer)
    mailer.close()
    row = _row(app, out.reply)
    assert row.status == "sent", row.last_error
    [envelope] = relay.envelopes
    assert max(len(line) for line in envelope.raw.split(b"\r\n")) <= 998
    [captured] = relay.messages
    assert captured["Subject"].startswith("Re: Auskunft-bitte-bitte")
    assert captured["Subject"].endswith(f"… [JC-{out.ticket}]")
