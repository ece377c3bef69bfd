"""Identity evidence on both databases: staff open a ticket's attachments (each opening
recorded), mark them checked, and the retention run then removes them from the stored mail,
keeping who checked them and when; a legal hold stops that, and later mail waits for its
own check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from sqlalchemy import select, update

from privbot import erasure, pipeline, retention
from privbot.app import App
from privbot.mail.parse import attachment_data, parse_message
from privbot.models import Event, Message, utcnow
from privbot.serve import Service
from privbot.staff import evidence, views
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port
from tests.cli.test_main import privbot

ADA = "ada@junocloud.me"
ANN = "Ann Example <ann@example.org>"
PASSPORT = b"%PDF-1.4\n" + b"PASSPORT-OF-ANN-EXAMPLE " * 200


def evidence_mail(
    ticket_id: int,
    *,
    sender: str = ANN,
    files: tuple[tuple[str, str, bytes], ...] = (("dni.pdf", "application/pdf", PASSPORT),),
    text: str = "Here is a copy of my passport, as you asked.",
) -> bytes:
    """A requester's follow-up on ticket `ticket_id` (its subject tag) with attachments."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@junocloud.me"
    msg["Subject"] = f"Re: Copy of my data [JC-{ticket_id}]"
    msg["Date"] = format_datetime(utcnow())
    msg.set_content(text + "\n")
    for name, ctype, data in files:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def access_with_evidence(app: App, **kw: object) -> tuple[int, int]:
    """An access request's ticket and the message that brought the evidence into it."""
    out = pipeline.receive(
        app, mail(sender=ANN, subject="Copy of my data",
                  body="Please send me a copy of all personal data you hold about me."),
        source="file",
    )  # fmt: skip
    assert out.ticket is not None
    follow = pipeline.receive(app, evidence_mail(out.ticket, **kw), source="file")  # type: ignore[arg-type]
    assert follow.ticket == out.ticket, follow
    return out.ticket, follow.message


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    app = make_app(db_url)
    try:
        yield app
    finally:
        app.close()


def _events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def _raw(app: App, message_id: int) -> bytes:
    with app.sessions() as s:
        raw = s.scalar(select(Message.raw).where(Message.id == message_id))
        assert raw is not None
        return raw


def _files(app: App, message_id: int) -> bytes:
    """Every attachment's decoded bytes in the stored message, run together."""
    raw = _raw(app, message_id)
    count = len(parse_message(raw).attachments)
    return b"".join(attachment_data(raw, i).data for i in range(count))


def test_opening_an_attachment_gives_its_bytes_and_records_who_opened_which(app: App) -> None:
    ticket_id, message_id = access_with_evidence(app)
    found = evidence.open_attachment(app, ticket_id, message_id, 0, actor=ADA, via="web")
    assert (found.filename, found.content_type, found.data) == (
        "dni.pdf", "application/pdf", PASSPORT,
    )  # fmt: skip
    [opened] = _events(app, "attachment_opened")
    assert (opened.actor, opened.ticket_id, opened.message_id) == (ADA, ticket_id, message_id)
    assert opened.detail == {"index": 0, "filename": "dni.pdf", "content_type": "application/pdf",
                             "size": len(PASSPORT), "via": "web"}  # fmt: skip

    # Another ticket's message, a number it does not have: refused, nothing recorded.
    other = pipeline.receive(app, mail(sender="bob@example.org"), source="file")
    assert other.ticket is not None and other.ticket != ticket_id
    with pytest.raises(evidence.NoSuchAttachment, match="no message"):
        evidence.open_attachment(app, other.ticket, message_id, 0, actor=ADA, via="web")
    with pytest.raises(evidence.NoSuchAttachment, match="no attachment 1"):
        evidence.open_attachment(app, ticket_id, message_id, 1, actor=ADA, via="web")
    assert len(_events(app, "attachment_opened")) == 1


def test_the_ticket_page_lists_every_attachment_of_every_message(app: App) -> None:
    ticket_id, first = access_with_evidence(app)
    second = pipeline.receive(
        app, evidence_mail(ticket_id, files=(("back.jpg", "image/jpeg", b"\xff\xd8" * 700),
                                             ("note.txt", "text/plain", b"my number"))),
        source="file",
    )  # fmt: skip
    detail = views.ticket_detail(app, ticket_id)
    assert detail is not None
    listed = [(a["message"], a["index"], a["name"], a["content_type"], a["size"])
              for m in detail["thread"] if m["direction"] == "in"
              for a in m["attachments"]]  # fmt: skip
    assert listed == [
        (first, 0, "dni.pdf", "application/pdf", len(PASSPORT)),
        (second.message, 0, "back.jpg", "image/jpeg", 1400),
        (second.message, 1, "note.txt", "text/plain", 9),
    ]
    assert detail["evidence"]["checked"] is None


def test_checked_evidence_is_removed_by_the_next_run_and_the_check_stays(app: App) -> None:
    ticket_id, message_id = access_with_evidence(app)
    with pytest.raises(evidence.EvidenceError, match="no attachments"):
        bare = pipeline.receive(app, mail(sender="bob@example.org"), source="file")
        evidence.mark_checked(app, bare.ticket or 0, actor=ADA)
    # Not checked: the run leaves the evidence alone.
    assert retention.run(app).evidence_attachments_removed == 0
    assert b"PASSPORT-OF-ANN" in _files(app, message_id)

    assert evidence.mark_checked(app, ticket_id, actor=ADA) == 1
    [check] = _events(app, "evidence_checked")
    assert (check.actor, check.ticket_id, check.detail) == (
        ADA, ticket_id, {"attachments": 1, "messages": [message_id]},
    )  # fmt: skip
    report = retention.run(app)
    assert report.evidence_attachments_removed == 1
    raw = _raw(app, message_id)
    assert b"PASSPORT-OF-ANN" not in _files(app, message_id) and b"UEFTU1BPUlQt" not in raw
    parsed = parse_message(raw)
    assert "copy of my passport" in parsed.text  # the words stay
    [note] = parsed.attachments
    assert note.removed and note.filename == "dni.pdf"
    with pytest.raises(evidence.AttachmentRemoved):
        evidence.open_attachment(app, ticket_id, message_id, 0, actor=ADA, via="web")

    [removal] = _events(app, "evidence_removed")
    assert removal.detail["attachments"] == 1 and removal.detail["messages"] == [message_id]
    assert removal.detail["checked_by"] == ADA
    assert removal.detail["checked_at"] == check.at.isoformat()
    # Who checked and when: still there, as it was.
    assert [(e.id, e.actor, e.at) for e in _events(app, "evidence_checked")] == [
        (check.id, ADA, check.at)
    ]
    run_event = _events(app, "retention_run")[-1]
    assert run_event.detail["evidence_attachments_removed"] == 1
    state = views.ticket_detail(app, ticket_id)["evidence"]  # type: ignore[index]
    assert state["checked"] == {"by": ADA, "at": check.at.isoformat()}
    assert state["removed"]["attachments"] == 1 and state["removal_due"] is None

    # Done once: the next run removes nothing more and records nothing more.
    assert retention.run(app).evidence_attachments_removed == 0
    assert len(_events(app, "evidence_removed")) == 1


def test_mail_after_the_check_waits_for_its_own_check(app: App) -> None:
    ticket_id, first = access_with_evidence(app)
    evidence.mark_checked(app, ticket_id, actor=ADA)
    with app.sessions.begin() as s:  # the evidence came two hours ago, the check one
        s.execute(update(Message).where(Message.id == first)
                  .values(received_at=utcnow() - timedelta(hours=2)))  # fmt: skip
        s.execute(update(Event).where(Event.kind == "evidence_checked")
                  .values(at=utcnow() - timedelta(hours=1)))  # fmt: skip
    later = pipeline.receive(
        app, evidence_mail(ticket_id, files=(("new-scan.png", "image/png", b"PNG-NEWER" * 50),)),
        source="file",
    )  # fmt: skip
    retention.run(app)
    assert b"PASSPORT-OF-ANN" not in _files(app, first)
    assert b"PNG-NEWER" in _files(app, later.message)  # nobody checked it yet
    evidence.mark_checked(app, ticket_id, actor="bea@junocloud.me")
    assert retention.run(app).evidence_attachments_removed == 1
    assert b"PNG-NEWER" not in _files(app, later.message)
    removals = _events(app, "evidence_removed")
    assert [r.detail["checked_by"] for r in removals] == [ADA, "bea@junocloud.me"]


def test_removal_waits_the_evidence_days_after_the_check(db_url: str) -> None:
    app = make_app(db_url, retain_evidence_days="14")
    try:
        ticket_id, message_id = access_with_evidence(app)
        evidence.mark_checked(app, ticket_id, actor=ADA)
        state = views.ticket_detail(app, ticket_id)["evidence"]  # type: ignore[index]
        [check] = _events(app, "evidence_checked")
        assert state["removal_due"] == (check.at + timedelta(days=14)).isoformat()
        assert (
            retention.run(app, now=utcnow() + timedelta(days=13)).evidence_attachments_removed == 0
        )
        assert b"PASSPORT-OF-ANN" in _files(app, message_id)
        assert (
            retention.run(app, now=utcnow() + timedelta(days=15)).evidence_attachments_removed == 1
        )
        assert b"PASSPORT-OF-ANN" not in _files(app, message_id)
    finally:
        app.close()


def test_a_legal_hold_stops_the_removal_until_it_is_released(app: App) -> None:
    ticket_id, message_id = access_with_evidence(app)
    evidence.mark_checked(app, ticket_id, actor=ADA)
    erasure.place_hold(app, erasure.target("ann@example.org"), reason="court case", actor=ADA)
    report = retention.run(app)
    assert (report.evidence_attachments_removed, report.evidence_on_hold) == (0, 1)
    assert b"PASSPORT-OF-ANN" in _files(app, message_id)
    assert _events(app, "evidence_removed") == []
    assert views.ticket_detail(app, ticket_id)["evidence"]["on_hold"] is True  # type: ignore[index]

    erasure.release_hold(app, erasure.target("ann@example.org"), reason="settled", actor=ADA)
    erasure.place_hold(app, erasure.target(f"JC-{ticket_id}"), reason="audit", actor=ADA)
    assert retention.run(app).evidence_on_hold == 1  # a hold on the ticket stops it too
    erasure.release_hold(app, erasure.target(f"JC-{ticket_id}"), reason="done", actor=ADA)
    assert retention.run(app).evidence_attachments_removed == 1
    assert b"PASSPORT-OF-ANN" not in _files(app, message_id)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dni.pdf", "dni.pdf"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("C:\\Windows\\evil.bat", "C__Windows_evil.bat"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # the right-to-left override goes
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ("line\r\nbreak\t.pdf", "linebreak.pdf"),
        ("...hidden", "hidden"),
        ('quote"d;name.pdf', "quote_d;name.pdf"),
        ("", "message-3-attachment-1"),
        (None, "message-3-attachment-1"),
        ("\u202e\u200b", "message-3-attachment-1"),
        ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
        ("Führerschein 正面.jpg", "Führerschein 正面.jpg"),
    ],
)
def test_file_names_are_made_safe_to_save(name: str | None, expected: str) -> None:
    assert evidence.safe_filename(name, 3, 1) == expected


def test_privbot_retention_run_removes_checked_evidence(db_url: str) -> None:
    app = make_app(db_url)
    try:
        ticket_id, message_id = access_with_evidence(app)
        evidence.mark_checked(app, ticket_id, actor=ADA)
        result = privbot("retention", "run", env={"PRIVBOT_DATABASE_URL": db_url})
        assert result.returncode == 0, result.stderr
        assert "evidence attachments removed: 1" in result.stdout
        assert b"PASSPORT-OF-ANN" not in _files(app, message_id)

        [removal] = _events(app, "evidence_removed")
        assert removal.detail["checked_by"] == ADA
    finally:
        app.close()


def test_serve_runs_the_evidence_removal(sqlite_url: str) -> None:
    app = make_app(sqlite_url, web=f"127.0.0.1:{free_port()}")
    ticket_id, message_id = access_with_evidence(app)
    evidence.mark_checked(app, ticket_id, actor=ADA)
    service = Service(app).start()
    try:
        wait_until(
            lambda: b"PASSPORT-OF-ANN" not in _files(app, message_id), what="serve's retention run"
        )
    finally:
        service.stop()
        app.close()
