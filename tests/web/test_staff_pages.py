"""The staff's pages and actions over HTTP, on SQLite and PostgreSQL: queue, ticket, actions."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from privbot import optouts, pipeline
from privbot.app import App
from privbot.models import Event, Example, Outgoing, Suppression, Ticket, utcnow
from privbot.outbox.sender import Mailer
from privbot.tickets import open_ticket
from privbot.web import create_app
from testing.apps import mail, make_app, send_one
from testing.servers import CaptureRelay
from tests.web.conftest import STAFF, add_staff, login


@pytest.fixture
def any_app(db_url: str) -> Iterator[App]:
    app = make_app(db_url, secret_key="test-secret-key")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def staff(any_app: App) -> Iterator[TestClient]:
    add_staff(any_app)
    add_staff(any_app, "bea@junocloud.me")
    with TestClient(create_app(any_app)) as c:
        c.csrf = login(c)  # type: ignore[attr-defined]
        yield c


def _ticket(app: App, requester: str, subject: str, due_in_days: int, **kw: object) -> int:
    with app.sessions.begin() as session:
        t = open_ticket(
            session,
            requester=requester,
            subject=subject,
            received_at=utcnow(),
            due_months=0,
            **kw,  # type: ignore[arg-type]
        )
        # Noon of the due day: "days left" counts calendar days, whatever the hour the test runs.
        noon = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
        t.due_at = noon + timedelta(days=due_in_days)
        return t.id


def _refs(html: str) -> list[str]:
    return re.findall(r'<td class="ref"><a href="/tickets/\d+">(JC-\d+)</a>', html)


def test_queue_oldest_due_first_with_days_left_filters_search_and_pages(
    any_app: App, staff: TestClient
) -> None:
    late = _ticket(
        any_app,
        "zed@example.org",
        "Where is my data?",
        -3,
        type="access",
        status="awaiting_identity",
        language="de",
    )
    soon = _ticket(any_app, "amy@example.org", "Delete me", 2, type="deletion", language="en")
    later = _ticket(
        any_app,
        "bob@example.net",
        "Fix my name",
        20,
        type="correction",
        language="en",
        status="in_progress",
    )
    closed = _ticket(any_app, "cat@example.org", "Done one", 1, type="other")
    with any_app.sessions.begin() as session:
        session.get(Ticket, closed).closed_at = utcnow()  # type: ignore[union-attr]
        session.get(Ticket, soon).assignee = STAFF  # type: ignore[union-attr]

    page = staff.get("/queue").text
    assert _refs(page) == [f"JC-{late}", f"JC-{soon}", f"JC-{later}"]  # closed: not in the queue
    assert "overdue 3 d" in page and 'class="overdue"' in page
    assert "2 days left" in page and "20 days left" in page

    def refs(query: str) -> list[str]:
        response = staff.get("/queue?" + query)
        assert response.status_code == 200
        return _refs(response.text)

    assert refs("type=deletion") == [f"JC-{soon}"]
    assert refs("status=in_progress") == [f"JC-{later}"]
    assert refs("language=de") == [f"JC-{late}"]
    assert refs("assignee=me") == [f"JC-{soon}"]
    assert refs(f"assignee={STAFF}") == [f"JC-{soon}"]
    assert refs("assignee=none") == [f"JC-{late}", f"JC-{later}"]
    assert refs("q=bob@example") == [f"JC-{later}"]  # an address: by its beginning
    assert refs("q=DATA") == [f"JC-{late}"]  # words: in the subject, any case
    assert refs("q=example.net") == [f"JC-{later}"]
    assert refs("q=100%25") == []  # LIKE wildcards are searched for, not obeyed
    assert "No ticket, open or closed, matches" in staff.get("/queue?q=nothing-like-this").text

    for i in range(60):
        _ticket(any_app, f"p{i:02d}@example.org", f"Page test {i}", 30 + i)
    first, second = staff.get("/queue").text, staff.get("/queue?page=2").text
    assert len(_refs(first)) == 50 and len(_refs(second)) == 13
    assert "Page 1 of 2" in first and 'href="/queue?page=2"' in first
    assert not set(_refs(first)) & set(_refs(second))
    assert staff.get("/queue?page=0").status_code == 400  # a clear error, not a crash


def test_ticket_page_shows_thread_why_audit_and_unverified_sender(
    any_app: App, staff: TestClient, relay: CaptureRelay
) -> None:
    html_mail = (
        b"From: Lena <lena@example.org>\r\nTo: support@junocloud.me\r\n"
        b"Subject: My data <b>now</b>\r\nMessage-ID: <lena-html@example.org>\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Please send me a <i>copy of my personal data</i>.</p>"
        b"<img src=x onerror=alert(1)><script>alert('x')</script>\r\n"
    )
    out = pipeline.receive(any_app, html_mail, source="file")
    assert out.ticket is not None
    with any_app.sessions.begin() as session:
        session.get(Ticket, out.ticket).sender_verified = False  # type: ignore[union-attr]
    _deliver(any_app, relay)

    page = staff.get(f"/tickets/{out.ticket}").text
    assert "Sender not verified" in page
    assert "Please send me a copy of my personal data" in page  # the HTML as text
    assert "<img src=x" not in page and "<script>alert" not in page and "<i>copy" not in page
    assert "My data &lt;b&gt;now&lt;/b&gt;" in page  # the subject escaped, not markup
    assert "Dear Lena" in page or "Hello" in page  # our automatic reply, in the thread
    assert 'class="mail out"' in page and ">sent<" in page
    # Why: the classified event (intents, confidence, matched phrases) and the audit trail.
    assert "Why privbot decided this" in page and "data_access" in page
    assert "confidence" in page and "<code>" in page
    # The trail in sentences (privbot/staff/events.py), never the detail's repr.
    for said in ("Ticket opened as an access request.", "Read as a copy of their data",
                 "Automatic reply queued", "Reply sent to lena"):  # fmt: skip
        assert said in page, said
    assert staff.get("/tickets/99999").status_code == 404
    malformed = staff.get("/tickets/abc")  # the friendly 404 in the layout, not a bare 400
    assert malformed.status_code == 404 and "is not a ticket reference" in malformed.text
    assert staff.get(f"/tickets/JC-{out.ticket}").status_code == 200


def test_a_request_nothing_verified_says_so_with_the_envelope_sender_and_verdict(
    any_app: App, staff: TestClient
) -> None:
    """No trusted verdict: "sender not verified", the envelope sender and the verdict, and
    for a request about the person's data, plainly, that their identity is unproven."""
    raw = mail(sender="Ola <ola@example.org>", subject="My data",
               body="Please send me a copy of all personal data you hold about me.")  # fmt: skip
    out = pipeline.receive(any_app, raw, source="smtp", envelope_from="bounce@mailer.example")
    assert out.ticket is not None
    page = staff.get(f"/tickets/{out.ticket}").text
    assert "Sender not verified." in page and "Nothing proves that this mail comes from" in page
    assert "&lt;bounce@mailer.example&gt;" in page  # the envelope sender
    assert "none: no Authentication-Results" in page  # the verdict
    assert "Identity unproven." in page
    with any_app.sessions.begin() as session:  # once proven, nothing of it is shown
        session.get(Ticket, out.ticket).sender_verified = True  # type: ignore[union-attr]
    page = staff.get(f"/tickets/{out.ticket}").text
    assert "Sender not verified" not in page and "Identity unproven" not in page


def _deliver(app: App, relay: CaptureRelay) -> None:
    settings = app.settings
    from privbot.config import load_settings

    smtp = load_settings({"PRIVBOT_SMTP_URL": relay.url}).smtp
    assert smtp is not None and settings is not None
    mailer = Mailer(smtp)
    try:
        while send_one(app, mailer):
            pass
    finally:
        mailer.close()


def _post(client: TestClient, path: str, **data: object) -> object:
    return client.post(path, data={"csrf": client.csrf, **data}, follow_redirects=False)  # type: ignore[attr-defined]


def test_staff_work_a_ticket_assign_status_extend_reply_note(
    any_app: App, staff: TestClient, relay: CaptureRelay
) -> None:
    out = pipeline.receive(
        any_app,
        mail(
            sender="Max <max@example.org>",
            subject="Auskunft",
            body="Bitte senden Sie mir eine Kopie meiner Daten.",
        ),
        source="file",
    )
    tid = out.ticket
    with any_app.sessions() as session:
        ticket = session.get(Ticket, tid)
        assert ticket is not None and ticket.type == "access"
        due = ticket.due_at
    assert due is not None

    r = _post(staff, f"/tickets/{tid}/assign", assignee="me")
    assert r.status_code == 303 and r.headers["location"] == f"/tickets/{tid}?done=assigned"
    assert "Assignment saved" in staff.get(r.headers["location"]).text
    r = _post(staff, f"/tickets/{tid}/assign", assignee="nobody@junocloud.me")
    assert r.status_code == 400 and "no active staff account" in r.text
    r = _post(staff, f"/tickets/{tid}/assign", assignee="bea@junocloud.me")
    assert r.status_code == 303

    r = _post(staff, f"/tickets/{tid}/status", status="open")  # not a status of access
    assert r.status_code == 400 and "awaiting_identity, in_progress, done, rejected" in r.text
    assert _post(staff, f"/tickets/{tid}/status", status="in_progress").status_code == 303

    r = _post(staff, f"/tickets/{tid}/extend", months=2, reason="")
    assert r.status_code == 400 and "reason" in r.text
    r = _post(staff, f"/tickets/{tid}/extend", months=2, reason="We must collect from archives.")
    assert r.status_code == 303
    r = _post(staff, f"/tickets/{tid}/extend", months=1, reason="More")
    assert r.status_code == 400 and "GDPR allows 2 in all" in r.text

    # A reply from a template, previewed, edited, sent, and the ticket closed with it.
    page = staff.get(f"/tickets/{tid}?template=identity_needed").text
    # The ticket's language (German), his mail quoted below.
    assert "Nachweis Ihrer Identität" in page and "Guten Tag Max" in page
    assert "&gt; Bitte senden Sie mir eine Kopie meiner Daten." in page
    r = _post(staff, f"/tickets/{tid}/reply/preview", body="Dear Max,\n\nHere it is.\n")
    assert r.status_code == 200
    assert "Preview: exactly what will be sent" in r.text
    assert f"Re: Auskunft [JC-{tid}]" in r.text and "max@example.org" in r.text
    r = _post(staff, f"/tickets/{tid}/reply", body="Dear Max,\n\nHere it is.\n", then_status="done")
    assert r.status_code == 303
    r = _post(staff, f"/tickets/{tid}/reply", body="   ")
    assert r.status_code == 400 and "the reply is empty" in r.text

    r = _post(staff, f"/tickets/{tid}/note", text="Called him; <b>ok</b>.")
    assert r.status_code == 303

    _deliver(any_app, relay)
    with any_app.sessions() as session:
        ticket = session.get(Ticket, tid)
        assert ticket is not None
        assert ticket.assignee == "bea@junocloud.me" and ticket.status == "done"
        assert ticket.closed_at is not None
        assert ticket.due_at is not None and (ticket.due_at - due).days >= 59
        rows = session.scalars(select(Outgoing).order_by(Outgoing.id)).all()
        assert [(o.kind, o.status) for o in rows] == [
            ("auto", "sent"),
            ("staff", "sent"),
            ("staff", "sent"),
        ]
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.actor == STAFF))]
    assert kinds == [
        "login",
        "assigned",
        "assigned",
        "status_changed",
        "deadline_extended",
        "extension_notice_queued",
        "staff_reply",
        "status_changed",
        "note",
    ]
    sent = relay.messages
    extension, answer = sent[1], sent[2]
    assert "We must collect from archives." in extension.get_content()
    assert "Auto-Submitted" not in answer  # a person wrote it
    assert answer["In-Reply-To"] and answer["Subject"] == f"Re: Auskunft [JC-{tid}]"
    assert "Here it is." in answer.get_content()

    page = staff.get(f"/tickets/{tid}").text
    assert "Called him; &lt;b&gt;ok&lt;/b&gt;." in page
    assert "Staff reply" in page and "Closed" in page


def test_reclassify_records_and_teaches_the_classifier_from_then_on(
    any_app: App, staff: TestClient, db_url: str
) -> None:
    text = "Frobnicate my zorblax records please"
    out = pipeline.receive(any_app, mail(subject="zorblax", body=text), source="file")
    before = any_app.classifier.classify(text)
    assert "deletion" not in before.intents
    r = _post(staff, f"/tickets/{out.ticket}/reclassify", intents=["deletion"])
    assert r.status_code == 303
    r = _post(staff, f"/tickets/{out.ticket}/reclassify", intents=["bogus"])
    assert r.status_code == 400 and "unknown intent" in r.text
    with any_app.sessions() as session:
        ticket = session.get(Ticket, out.ticket)
        assert ticket is not None and ticket.intents == ["deletion"] and ticket.type == "deletion"
        examples = session.scalars(select(Example)).all()
        assert [(e.intent, e.created_by) for e in examples] == [("deletion", STAFF)]
        event = session.scalar(select(Event).where(Event.kind == "reclassified"))
        assert event is not None and event.detail["previous"] != ["deletion"]
    # From then on the classifier knows the correction: in this process at once ...
    assert "deletion" in any_app.classifier.classify(text).intents
    # ... in another one (a second serve process) at its next refresh, and after a restart.
    other = make_app(db_url, secret_key="x")
    try:
        assert "deletion" in other.classifier.classify(text).intents
    finally:
        other.close()


def test_opt_out_apply_and_undo_from_a_ticket(any_app: App, staff: TestClient) -> None:
    out = pipeline.receive(
        any_app, mail(sender="ann@example.org", subject="Hi", body="Who are you?"), source="file"
    )
    tid = out.ticket
    r = _post(
        staff,
        f"/tickets/{tid}/optout",
        address="ann@example.org",
        scopes=["marketing_email", "targeted_ads"],
    )
    assert r.status_code == 303
    assert "marketing_email, targeted_ads" in staff.get(f"/tickets/{tid}").text
    r = _post(
        staff,
        f"/tickets/{tid}/optout",
        address="ann@example.org",
        scopes=["targeted_ads"],
        undo="1",
    )
    assert r.status_code == 303
    r = _post(staff, f"/tickets/{tid}/optout", address="not an address", scopes=["targeted_ads"])
    assert r.status_code == 400
    r = _post(staff, f"/tickets/{tid}/optout", address="ann@example.org", scopes=["spam"])
    assert r.status_code == 400 and "unknown scope" in r.text
    with any_app.sessions() as session:
        rows = {s.scope: s.withdrawn_at for s in session.scalars(select(Suppression))}
        kinds = [e.kind for e in session.scalars(select(Event).where(Event.actor == STAFF))]
    assert rows["marketing_email"] is None and rows["targeted_ads"] is not None
    assert kinds[-2:] == ["opt_out_applied", "opt_out_withdrawn"]

    # The suppression list: search, withdrawn on request, CSV export.
    page = staff.get("/suppressions?q=ann@").text
    assert "ann@example.org" in page and "targeted_ads" not in page
    assert "targeted_ads" in staff.get("/suppressions?q=ann&withdrawn=true").text
    assert "ann@example.org" not in staff.get("/suppressions?q=zzz").text
    csv = staff.get("/suppressions.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    lines = csv.text.splitlines()
    assert lines[0] == "address,scope,since,by,ticket_id,source_message,withdrawn_at"
    assert len(lines) == 2 and lines[1].startswith("ann@example.org,marketing_email,")
    assert f",{STAFF},{tid},," in lines[1]


def test_audit_log_lists_and_filters_every_action(any_app: App, staff: TestClient) -> None:
    out = pipeline.receive(any_app, mail(), source="file")
    _post(staff, f"/tickets/{out.ticket}/note", text="first look")
    page = staff.get("/audit").text
    for kind in ("ticket opened", "classified", "reply queued", "note", "login"):
        assert kind in page, kind
    staff_only = staff.get("/audit?actor=staff").text
    assert "note" in staff_only and "ticket opened" not in staff_only
    by_kind = staff.get("/audit?kind=note").text
    assert "first look" in by_kind and "classified" not in by_kind.split("<tbody>")[1]
    assert "first look" in staff.get(f"/audit?ticket=JC-{out.ticket}").text
    assert "Nothing recorded matches" in staff.get("/audit?ticket=JC-999").text
    with any_app.sessions() as session:
        assert session.scalar(select(func.count(Event.id))) >= 5


# Addresses a spreadsheet would take for formulas (each is a valid address, or could be sent
# as one): the export must hand them over as text.
FORMULAS = ["=cmd|'/C calc'!A0@example.org", "+1-2@example.org", "-2+3@example.org",
            "@SUM(1+1)@example.org", "\t=1+1@example.org", "\r=1+1@example.org"]  # fmt: skip


def _opt_out_formulas(app: App) -> None:
    with app.sessions.begin() as session:
        for address in [*FORMULAS, "plain@example.org"]:
            optouts.apply(session, address, ("marketing_email",), message=None, ticket=None)


def test_the_csv_export_never_carries_a_formula(any_app: App, staff: TestClient) -> None:
    _opt_out_formulas(any_app)
    response = staff.get("/suppressions.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["address"] for r in rows) == sorted(
        ["'" + a for a in FORMULAS] + ["plain@example.org"]
    )


@pytest.mark.parametrize("path", ["/tickets/99999999999999999999", "/tickets/2147483648"])
def test_an_out_of_range_ticket_id_is_a_404_with_the_security_headers(
    any_app: App, staff: TestClient, path: str
) -> None:
    # Larger than any integer column: the database driver would raise on it.
    for response in (staff.get(path), _post(staff, f"{path}/note", text="hello")):
        assert response.status_code == 404, response.text  # type: ignore[attr-defined]
        headers = response.headers  # type: ignore[attr-defined]
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert headers["X-Frame-Options"] == "DENY"
        assert "There is no ticket" in response.text  # type: ignore[attr-defined]


def test_a_crash_is_an_error_page_with_the_security_headers(any_app: App) -> None:
    # A real fault, not a mocked one: the table the page reads is gone.
    add_staff(any_app)
    tid = _ticket(any_app, "ann@example.org", "Hello", 5)
    with TestClient(create_app(any_app), raise_server_exceptions=False) as client:
        login(client)
        with any_app.engine.begin() as conn:
            conn.execute(text("ALTER TABLE tickets RENAME TO tickets_gone"))
        response = client.get(f"/tickets/{tid}")
    assert response.status_code == 500
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Something went wrong on our side." in response.text
    assert "Traceback" not in response.text and "tickets" not in response.text
