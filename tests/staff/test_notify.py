"""Mail to staff (PRIVBOT_STAFF_NOTIFY): a notice for each new ticket that needs them, or a
daily digest instead, and the daily list of tickets due within 5 days and overdue, coloured
as Fides colours its days-left tag. Through the real pipeline, outbox and sender to a real
SMTP relay, on SQLite and PostgreSQL; the daily mail exactly once a day however many
processes run it (two Apps on one database, two serve loops, the CLI)."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from privbot import pipeline
from privbot.app import App, data_folder
from privbot.config import ConfigError, load_settings
from privbot.models import Event, Outgoing, Ticket, utcnow
from privbot.outbox import sender
from privbot.outbox.sender import Mailer
from privbot.serve import Service
from privbot.staff import auth, daily, notify, views
from testing.apps import mail, make_app, wait_until
from testing.servers import CaptureRelay, free_port
from tests.cli.test_main import privbot

PUBLIC = "https://privacy.junocloud.me"
ADA, BEA, CY = "ada@junocloud.me", "bea@junocloud.me", "cy@junocloud.me"
SUPPORT = "support@junocloud.me"
# What a requester wrote: none of it may reach a staff mailbox.
HOSTILE_SUBJECT = "Copy of my data - reset your password at http://evil.example/login"
HOSTILE_BODY = (
    "Please send me a copy of my personal data.\n\nMy passport number is X1234567.\n\n"
    "Alice Lindqvist\n"
)


def _app(db_url: str, relay: CaptureRelay, **env: str) -> App:
    values = {"public_url": PUBLIC, "smtp_url": relay.url, "staff_daily_hour": "0", **env}
    return make_app(db_url, **values)


def _staff(app: App, *active: str, disabled: tuple[str, ...] = ()) -> None:
    with app.sessions.begin() as session:
        for address in (*active, *disabled):
            auth.add_staff(session, address, "a long enough password")
        for address in disabled:
            auth.disable_staff(session, address)


def _send_all(app: App) -> None:
    mailer = Mailer(app.settings.smtp)  # type: ignore[arg-type]
    try:
        while sender.send_due(app, mailer):
            pass
    finally:
        mailer.close()


def _to(relay: CaptureRelay, *addresses: str) -> list[EmailMessage]:
    return [m for m in relay.messages if str(m["To"]) in addresses]


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return f"{message['Subject']}\n{body.get_content()}"


def _access_request(app: App, sender_addr: str = "alice@example.org", **kw: str) -> int:
    raw = mail(sender=f"Alice Lindqvist <{sender_addr}>", subject=HOSTILE_SUBJECT,
               body=HOSTILE_BODY, **kw)  # fmt: skip
    out = pipeline.receive(app, raw, source="file")
    assert out.ticket is not None
    return out.ticket


def _opt_out(app: App, sender_addr: str = "otto@example.org") -> int:
    raw = mail(sender=sender_addr, subject="unsubscribe",
               body="Please unsubscribe me from your newsletter.")  # fmt: skip
    out = pipeline.receive(app, raw, source="file")
    with app.sessions() as session:
        ticket = session.get(Ticket, out.ticket)
        assert ticket is not None and ticket.closed_at is not None  # done automatically
    return ticket.id


def _notice_rows(app: App) -> int:
    with app.sessions() as session:
        query = select(func.count()).select_from(Outgoing).where(Outgoing.kind == notify.NOTICE)
        return session.scalar(query) or 0


# -- each: a notice per new ticket that needs staff ----------------------------------------------


def test_each_new_ticket_that_needs_staff_is_announced_and_no_automatic_one(
    db_url: str, relay: CaptureRelay
) -> None:
    app = _app(db_url, relay, staff_notify="each")
    _staff(app, ADA, BEA, disabled=(CY,))
    ticket_id = _access_request(app)
    _opt_out(app)  # done automatically: nothing for staff, so no notice
    _send_all(app)

    notices = _to(relay, ADA, BEA, CY)
    assert sorted(str(m["To"]) for m in notices) == [ADA, BEA]  # active staff only
    assert len(_to(relay, "alice@example.org")) == 1  # the requester got her reply, no notice
    text = _text(notices[0])
    assert f"JC-{ticket_id}" in str(notices[0]["Subject"])
    assert f"{PUBLIC}/tickets/{ticket_id}" in text
    assert "a copy of their data" in text and "not verified" in text
    assert notices[0]["Auto-Submitted"] == "auto-generated"
    assert str(notices[0]["From"]).endswith(f"<{SUPPORT}>")
    # Nothing the requester wrote or is called leaves for a staff mailbox.
    for theirs in ("evil.example", "password", "X1234567", "Lindqvist", "alice", "personal data"):
        assert theirs not in text.lower(), theirs
    # Not part of the conversation: the ticket's thread is her mail and our answer.
    detail = views.ticket_detail(app, ticket_id)
    assert detail is not None
    assert [(x["direction"], x.get("to")) for x in detail["thread"]] == [
        ("in", None), ("out", "alice@example.org"),
    ]  # fmt: skip
    with app.sessions() as session:
        event = session.scalars(select(Event).where(Event.kind == "staff_notified")).one()
        assert event.ticket_id == ticket_id and event.detail["to"] == [ADA, BEA]
    # A follow-up joins the ticket: not a new ticket, no new notice.
    _access_request(app, headers={"In-Reply-To": f"<{_reply_id(app, ticket_id)}>"})
    assert _notice_rows(app) == 2


def _reply_id(app: App, ticket_id: int) -> str:
    with app.sessions() as session:
        return (
            session.scalars(
                select(Outgoing.message_id).where(Outgoing.ticket_id == ticket_id)
            ).first()
            or ""
        )


def test_a_notice_never_goes_to_the_requester_nor_to_privbot_itself(
    db_url: str, relay: CaptureRelay
) -> None:
    # A staff member who writes to the privacy mailbox is a requester: the others are told.
    app = _app(db_url, relay, staff_notify="each", staff_notify_to=f"{ADA},Bea+desk@junocloud.me")
    _access_request(app, sender_addr="bea@junocloud.me")
    _send_all(app)
    assert [str(m["To"]) for m in relay.messages if "needs staff" in str(m["Subject"])] == [ADA]
    with pytest.raises(ConfigError, match=r"PRIVBOT_STAFF_NOTIFY_TO: support@junocloud\.me is"):
        load_settings({"PRIVBOT_STAFF_NOTIFY": "each", "PRIVBOT_PUBLIC_URL": PUBLIC,
                       "PRIVBOT_STAFF_NOTIFY_TO": f"{ADA}, Support@JunoCloud.me"})  # fmt: skip


def test_the_settings_are_checked_at_start_up() -> None:
    with pytest.raises(ConfigError, match="PRIVBOT_STAFF_NOTIFY: needs PRIVBOT_PUBLIC_URL"):
        load_settings({"PRIVBOT_STAFF_NOTIFY": "each"})
    with pytest.raises(ConfigError, match="PRIVBOT_STAFF_NOTIFY: each, digest or off"):
        load_settings({"PRIVBOT_STAFF_NOTIFY": "hourly", "PRIVBOT_PUBLIC_URL": PUBLIC})
    with pytest.raises(ConfigError, match="PRIVBOT_STAFF_DAILY_HOUR: an hour of the day"):
        load_settings({"PRIVBOT_STAFF_DAILY_HOUR": "24"})
    with pytest.raises(ConfigError, match="PRIVBOT_STAFF_NOTIFY_TO: not an e-mail address"):
        load_settings({"PRIVBOT_STAFF_NOTIFY_TO": "ada@junocloud.me\r\nBcc: x@evil.example"})
    settings = load_settings({})
    assert (settings.staff_notify, settings.staff_notify_to) == ("off", ())


def test_off_sends_staff_nothing(db_url: str, relay: CaptureRelay) -> None:
    app = make_app(db_url, smtp_url=relay.url)
    _staff(app, ADA)
    _access_request(app)
    assert daily.run(app, before_hour=True).outcome == daily.OFF
    _send_all(app)
    assert [str(m["To"]) for m in relay.messages] == ["alice@example.org"]


def test_a_broken_staff_template_stops_start_up_naming_the_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    notice = replies / "_desk" / "notice.txt.j2"
    # A template that tries to put the requester's address in a staff mail: no such name.
    notice.write_text(notice.read_text() + "From: {{ ticket.requester }}\n")
    app = make_app(sqlite_url, replies_dir=str(replies))
    with pytest.raises(notify.DeskError, match=r"_desk/notice\.txt\.j2: .*requester"):
        Service(app).start()
    notice.write_text("A notice without a subject for {{ ticket.ref }}.\n")
    with pytest.raises(notify.DeskError, match=r"notice\.txt\.j2: sets no subject"):
        notify.check(app)


# -- digest: the day's new tickets in one mail ----------------------------------------------------


def test_digest_mode_sends_no_notice_but_the_new_tickets_in_the_daily_mail(
    db_url: str, relay: CaptureRelay
) -> None:
    app = _app(db_url, relay, staff_notify="digest", staff_notify_to=ADA)
    first = _access_request(app)
    automatic = _opt_out(app)
    assert _notice_rows(app) == 0  # nothing until the daily mail

    done = daily.run(app)
    assert (done.outcome, done.new, done.to) == (daily.SENT, 1, (ADA,))
    _send_all(app)
    (digest,) = _to(relay, ADA)
    text = _text(digest)
    assert "1 new" in str(digest["Subject"])
    assert f"- JC-{first}: a copy of their data (English)" in text
    assert f"{PUBLIC}/tickets/{first}" in text
    assert f"JC-{automatic}" not in text
    assert "evil.example" not in text and "Lindqvist" not in text

    # The next day's digest has what came since, and only that.
    relay.clear()
    second = _access_request(app, sender_addr="bob@example.org")
    done = daily.run(app, utcnow() + timedelta(days=1))
    assert (done.outcome, done.new) == (daily.SENT, 1)
    _send_all(app)
    text = _text(_to(relay, ADA)[0])
    assert f"JC-{second}:" in text and f"JC-{first}:" not in text


# -- the due list ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "expected"),
    [(30, "green"), (10, "green"), (9, "amber"), (5, "amber"), (4, "red"), (0, "red"),
     (-1, "red"), (-40, "red")],
)  # fmt: skip
def test_the_days_left_colour_follows_fides(days: int, expected: str) -> None:
    assert daily.colour(days) == expected


def test_the_daily_list_has_the_overdue_and_the_due_within_5_days_each_in_its_colour(
    db_url: str, relay: CaptureRelay
) -> None:
    app = _app(db_url, relay, staff_notify="each", staff_notify_to=f"{ADA},{BEA}")
    now = utcnow()
    left = {-3: None, 0: None, 4: None, 5: None, 6: None, 12: None}
    for days in left:
        left[days] = _access_request(app, sender_addr=f"p{days + 10}@example.org")
    closed = _access_request(app, sender_addr="closed@example.org")
    with app.sessions.begin() as session:
        for days, ticket_id in left.items():
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            ticket.due_at = now + timedelta(days=days)
            ticket.assignee = ADA if days == 0 else None
        gone = session.get(Ticket, closed)
        assert gone is not None
        gone.due_at, gone.closed_at, gone.status = now - timedelta(days=9), now, "done"
    _send_all(app)
    relay.clear()  # the notices of the new tickets

    done = daily.run(app, now)
    assert (done.outcome, done.overdue, done.due_soon, done.new) == (daily.SENT, 1, 3, None)
    _send_all(app)
    mails = _to(relay, ADA, BEA)
    assert sorted(str(m["To"]) for m in mails) == [ADA, BEA]
    text = _text(mails[0])
    assert "1 overdue, 3 due within 5 days" in str(mails[0]["Subject"])
    assert f"- [red] JC-{left[-3]}: a copy of their data (English), 3 days overdue" in text
    assert f"- [red] JC-{left[0]}: a copy of their data (English), due today, {ADA}" in text
    assert f"- [red] JC-{left[4]}: a copy of their data (English), 4 days left" in text
    assert f"- [amber] JC-{left[5]}: a copy of their data (English), 5 days left" in text
    for outside in (left[6], left[12], closed):
        assert f"JC-{outside}:" not in text
    assert f"{PUBLIC}/tickets/{left[-3]}" in text and "New tickets" not in text  # each mode
    # Overdue first, then by due date.
    order = [text.index(f"JC-{left[d]}:") for d in (-3, 0, 4, 5)]
    assert order == sorted(order)


def test_a_day_with_nothing_due_mails_nobody_but_is_claimed(
    db_url: str, relay: CaptureRelay
) -> None:
    app = _app(db_url, relay, staff_notify="each", staff_notify_to=ADA)
    done = daily.run(app)
    assert (done.outcome, done.outbox) == (daily.SENT, ())
    assert daily.run(app).outcome == daily.ALREADY


def test_the_daily_mail_waits_for_its_hour(db_url: str, relay: CaptureRelay) -> None:
    app = _app(db_url, relay, staff_notify="each", staff_notify_to=ADA, staff_daily_hour="7")
    morning = utcnow().replace(hour=6, minute=59)
    assert daily.run(app, morning).outcome == daily.EARLY
    assert daily.run(app, morning, before_hour=True).outcome == daily.SENT  # --now
    assert daily.run(app, morning.replace(hour=7, minute=0)).outcome == daily.ALREADY


# -- exactly once a day ---------------------------------------------------------------------------


def test_two_apps_on_one_database_send_the_daily_mail_once(
    db_url: str, relay: CaptureRelay
) -> None:
    apps = [_app(db_url, relay, staff_notify="each", staff_notify_to=f"{ADA},{BEA}")
            for _ in range(2)]  # fmt: skip
    ticket_id = _access_request(apps[0])
    with apps[0].sessions.begin() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ticket.due_at = utcnow() - timedelta(days=1)
    now = utcnow()
    start = threading.Barrier(len(apps) * 2)
    runs: list[daily.DailyRun] = []

    def go(app: App) -> None:
        start.wait()
        runs.append(daily.run(app, now))

    threads = [threading.Thread(target=go, args=(a,)) for a in apps for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.outcome for r in runs) == [daily.ALREADY] * 3 + [daily.SENT]
    _send_all(apps[1])
    daily_mails = [m for m in relay.messages if str(m["Subject"]).startswith("Privacy desk")]
    assert sorted(str(m["To"]) for m in daily_mails) == [ADA, BEA]
    with apps[0].sessions() as session:
        claims = session.scalars(select(Event).where(Event.kind == daily.DAILY)).all()
        assert [c.detail["day"] for c in claims] == [now.date().isoformat()]
    # The next day is another day.
    assert daily.run(apps[1], now + timedelta(days=1)).outcome == daily.SENT
    assert daily.run(apps[0], now + timedelta(days=1)).outcome == daily.ALREADY
    assert daily.run(apps[0], now).outcome == daily.ALREADY  # a clock behind sends no repeat


def test_two_serve_loops_send_the_daily_mail_once(db_url: str, relay: CaptureRelay) -> None:
    apps = [
        _app(db_url, relay, staff_notify="digest", staff_notify_to=ADA,
             web=f"127.0.0.1:{free_port()}")
        for _ in range(2)
    ]  # fmt: skip
    ticket_id = _access_request(apps[0])
    services = [Service(app).start() for app in apps]
    try:
        (digest,) = wait_until(lambda: _to(relay, ADA), what="the daily staff mail")
        assert f"JC-{ticket_id}: a copy of their data" in _text(digest)
        wait_until(lambda: _to(relay, "alice@example.org"), what="the reply")
        # Both loops looked at start; give a second mail time to arrive if one were queued.
        threading.Event().wait(2.0)
        assert len(_to(relay, ADA)) == 1
        with apps[1].sessions() as session:
            assert (
                session.scalar(
                    select(func.count()).select_from(Event).where(Event.kind == daily.DAILY)
                )
                == 1
            )
    finally:
        for service in services:
            service.stop()


def test_the_cli_sends_the_days_mail_once(db_url: str, relay: CaptureRelay) -> None:
    env = {"PRIVBOT_DATABASE_URL": db_url, "PRIVBOT_STAFF_NOTIFY": "each",
           "PRIVBOT_PUBLIC_URL": PUBLIC, "PRIVBOT_STAFF_NOTIFY_TO": ADA,
           "PRIVBOT_STAFF_DAILY_HOUR": "0"}  # fmt: skip
    app = make_app(db_url, smtp_url=relay.url)
    ticket_id = _access_request(app)
    with app.sessions.begin() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ticket.due_at = utcnow() + timedelta(days=2)
    sent = privbot("staff", "digest", "--now", env=env)
    assert sent.returncode == 0, sent.stderr
    assert "daily staff mail of" in sent.stdout and "1 mail queued for 1 recipient" in sent.stdout
    again = privbot("staff", "digest", env=env)
    assert again.returncode == 0 and "was already sent" in again.stdout
    off = privbot("staff", "digest", env={**env, "PRIVBOT_STAFF_NOTIFY": "off"})
    assert off.returncode == 1 and "PRIVBOT_STAFF_NOTIFY is off" in off.stdout
    _send_all(app)  # what `privbot serve`'s sender does with the queued mail
    (mail_to_ada,) = _to(relay, ADA)
    assert f"- [red] JC-{ticket_id}: a copy of their data (English), 2 days left" in _text(
        mail_to_ada
    )
