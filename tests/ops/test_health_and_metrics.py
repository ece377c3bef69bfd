"""Health and metrics: `/healthz`, `/readyz` (database, IMAP, SMTP receiver, outbox) and a
Prometheus scrape after real traffic, parsed with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from privbot import db, pipeline
from privbot.app import App, data_folder
from privbot.channels.smtp import listening, start_receiver
from privbot.models import Message, Outgoing, Ticket, utcnow
from privbot.ops.metrics import REASONS, reason_class
from privbot.outbox.sender import Mailer, send_due
from privbot.serve import Service
from privbot.web import create_app
from testing.apps import mail, make_app, wait_until
from testing.servers import CaptureRelay, Dovecot, free_port

TOKEN = "scrape-me-7f3a"
WORDS = {"ok", "fail", "stuck"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, token: str = TOKEN) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    """Every sample by (name, labels), read by prometheus-client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _broken_replies(tmp_path: Path) -> Path:
    # A reply template that breaks at render time: a real bug, not a mocked one.
    replies = tmp_path / "broken-replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "en" / "answer.txt.j2").write_text("{{ no_such_variable }}\n")
    return replies


def _send_all(app: App, mailer: Mailer) -> None:
    def done() -> bool:
        send_due(app, mailer)
        with app.sessions() as s:
            waiting = s.scalar(
                select(func.count(Outgoing.id)).where(Outgoing.status.in_(["pending", "sending"]))
            )
        return waiting == 0

    wait_until(done, timeout=30, what="every reply sent or failed")


def test_a_scrape_after_real_traffic(db_url: str, relay: CaptureRelay, tmp_path: Path) -> None:
    app = make_app(db_url, smtp_url=relay.url, metrics_token=TOKEN, max_message_bytes="2048",
                   retry_seconds="0.1")  # fmt: skip
    client = TestClient(create_app(app))
    people = [
        mail(sender="ann@example.org", subject="My data",
             body="Please send me a copy of all personal data you hold about me."),
        mail(sender="bob@example.org", subject="Newsletter",
             body="Please unsubscribe me from your newsletter."),
        mail(sender="bad@example.org", subject="My data",
             body="Please send me a copy of my personal data."),
    ]  # fmt: skip
    machines = [
        mail(sender="away@example.org", headers={"Auto-Submitted": "auto-replied"}),
        mail(sender="list@example.org", headers={"List-Id": "<news.example.org>"}),
        mail(sender="big@example.org", body="Please delete my account.\n" + "x" * 3000),
    ]
    outcomes = [pipeline.receive(app, raw, source="file") for raw in people + machines]
    assert [o.status for o in outcomes] == ["handled"] * 3 + ["screened"] * 2 + ["quarantined"]
    # Another process on the same database (a broken template there): its failure counts in
    # this process's scrape, for the figures come from the database.
    broken = make_app(db_url, replies_dir=str(_broken_replies(tmp_path)), max_attempts="1")
    failed = pipeline.receive(broken, mail(sender="cid@example.org", subject="Unsubscribe me"),
                              source="file")  # fmt: skip
    assert failed.status == "failed"

    time.sleep(0.3)
    before = scrape(client)
    assert value(before, "privbot_database_up") == 1
    assert value(before, "privbot_outbox_depth") == 3
    assert value(before, "privbot_outbox_oldest_age_seconds") >= 0.3

    relay.fail_with(451, times=1)  # one reply deferred, then sent
    relay.reject_rcpt("bad@example.org")  # one refused for good
    with app.sessions.begin() as s:  # one ticket overdue, another due in two days
        ann, bad = (s.scalar(select(Ticket.id).where(Ticket.requester == who))
                    for who in ("ann@example.org", "bad@example.org"))  # fmt: skip
        now = utcnow()
        s.execute(update(Ticket).where(Ticket.id == ann).values(due_at=now - timedelta(days=3)))
        s.execute(update(Ticket).where(Ticket.id == bad).values(due_at=now + timedelta(days=2)))
    mailer = Mailer(app.settings.smtp)  # type: ignore[arg-type]
    try:
        _send_all(app, mailer)
    finally:
        mailer.close()
    assert len(relay.messages) == 2

    after = scrape(client)
    messages = "privbot_messages_total"
    assert value(after, messages, outcome="received", reason="none") == 7
    assert value(after, messages, outcome="handled", reason="none") == 3
    assert value(after, messages, outcome="screened", reason="auto_reply") == 1
    assert value(after, messages, outcome="screened", reason="mailing_list") == 1
    assert value(after, messages, outcome="quarantined", reason="too_large") == 1
    assert value(after, messages, outcome="failed", reason="template") == 1
    for (name, labels), _ in after.items():  # label values from the fixed sets only
        if name == messages:
            reason = dict(labels)["reason"]
            assert reason in {*REASONS.values(), "none", "other", "template", "error"}
    assert value(after, "privbot_messages_by_status", status="handled") == 3
    assert value(after, "privbot_messages_by_status", status="failed") == 1
    assert value(after, "privbot_replies_total", outcome="sent") == 2
    assert value(after, "privbot_replies_total", outcome="retried") == 1
    assert value(after, "privbot_replies_total", outcome="failed") == 1
    assert value(after, "privbot_outbox_depth") == 0
    assert value(after, "privbot_outbox_oldest_age_seconds") == 0
    with app.sessions() as s:
        still_open = s.scalar(select(func.count(Ticket.id)).where(Ticket.closed_at.is_(None)))
    assert still_open >= 2  # ann's and bad's requests wait for staff
    assert value(after, "privbot_tickets_open") == still_open
    assert value(after, "privbot_tickets_overdue") == 1
    assert value(after, "privbot_tickets_due_soon") == 1
    # In this process's memory: the three people's mail was classified here, the failed
    # one in the other App (its own registry), the machines not at all (headers screened them).
    assert value(after, "privbot_classification_seconds_count") == 3
    assert value(after, "privbot_classification_seconds_sum") > 0
    assert value(after, "privbot_classification_seconds_bucket", le="+Inf") == 3
    assert value(after, "privbot_imap_reconnects_total") == 0
    assert ("privbot_imap_reconnects_total", ()) in after  # there, at zero
    assert value(after, "process_resident_memory_bytes") > 0
    other = parse(_exposition(broken))
    assert value(other, "privbot_classification_seconds_count") == 1


def _exposition(app: App) -> str:
    from prometheus_client import generate_latest

    return generate_latest(app.metrics.registry).decode()


def test_metrics_need_the_token_and_are_absent_without_one(sqlite_url: str) -> None:
    closed = TestClient(create_app(make_app(sqlite_url)))
    assert closed.get("/metrics").status_code == 404
    assert closed.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    client = TestClient(create_app(make_app(sqlite_url, metrics_token=TOKEN)))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer \u00fcn\u00ef".encode("latin-1")}):  # fmt: skip
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert "privbot_" not in response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert value(scrape(client), "privbot_database_up") == 1


def test_each_app_has_its_own_registry(sqlite_url: str) -> None:
    one, two = make_app(sqlite_url), make_app(sqlite_url)
    assert one.metrics.registry is not two.metrics.registry
    one.metrics.imap_reconnects.inc()
    assert value(parse(_exposition(one)), "privbot_imap_reconnects_total") == 1
    assert value(parse(_exposition(two)), "privbot_imap_reconnects_total") == 0


def test_reason_classes_take_the_kind_never_the_text() -> None:
    assert reason_class("screened", "bounce: From mailer-daemon@example.org") == "bounce"
    assert reason_class("screened", "no-reply sender: noreply@x.example") == "no_reply_sender"
    assert reason_class("screened", "bulk mail: Precedence: junk") == "bulk"
    assert reason_class("screened", "not understood") == "not_understood"
    assert reason_class("quarantined", "too large: 26214401 bytes") == "too_large"
    assert reason_class("screened", "Subject: buy now!!!") == "other"
    assert reason_class("screened", None) == "other"
    assert reason_class("failed", "OperationalError: (sqlite3.OperationalError) locked") == (
        "database"
    )
    assert reason_class("failed", "KeyError: 'ann@example.org'") == "error"


# -- /healthz and /readyz ------------------------------------------------------------------


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _only_words(body: dict[str, object]) -> dict[str, str]:
    """A readiness answer holds a status and a word per check: nothing an attacker can use."""
    assert set(body) == {"status", "checks"}
    checks = body["checks"]
    assert isinstance(checks, dict) and set(checks.values()) <= WORDS, body
    assert body["status"] in ("ready", "not ready")
    return checks


@pytest.fixture
def service(sqlite_url: str, dovecot: Dovecot, relay: CaptureRelay) -> Iterator[Service]:
    app = make_app(sqlite_url, imap_url=dovecot.imap_url(), smtp_url=relay.url,
                   listen=f"127.0.0.1:{free_port()}", web=f"127.0.0.1:{free_port()}")  # fmt: skip
    running = Service(app).start()
    yield running
    running.stop()


def test_ready_when_everything_is_up_and_not_when_imap_is_down(
    service: Service, dovecot: Dovecot
) -> None:
    host, port = service.app.settings.web
    base = f"http://{host}:{port}"
    wait_until(lambda: _get(f"{base}/readyz")[0] == 200, timeout=20, what="ready")
    status, body = _get(f"{base}/readyz")
    assert status == 200
    assert _only_words(body) == {"database": "ok", "outbox": "ok", "imap": "ok", "smtp": "ok"}
    assert body["status"] == "ready"
    assert _get(f"{base}/healthz") == (200, {"status": "ok"})

    dovecot.stop()
    wait_until(lambda: _get(f"{base}/readyz")[0] == 503, timeout=20, what="imap down seen")
    _, body = _get(f"{base}/readyz")
    checks = _only_words(body)
    assert checks["imap"] == "fail" and checks["database"] == checks["smtp"] == "ok"
    assert str(dovecot.imap_port) not in json.dumps(body)
    assert _get(f"{base}/healthz")[0] == 200  # alive all the same
    dovecot.start()
    wait_until(lambda: _get(f"{base}/readyz")[0] == 200, timeout=30, what="imap back")


def test_not_ready_when_the_smtp_receiver_stops(sqlite_url: str) -> None:
    app = make_app(sqlite_url, listen=f"127.0.0.1:{free_port()}")
    controller = start_receiver(app)
    app.probes.add("smtp", lambda: listening(controller))
    client = TestClient(create_app(app))
    assert client.get("/readyz").status_code == 200
    controller.stop()
    response = client.get("/readyz")
    assert response.status_code == 503 and _only_words(response.json())["smtp"] == "fail"


def test_not_ready_when_a_due_reply_waits_too_long(sqlite_url: str, relay: CaptureRelay) -> None:
    # No sender runs in this process (nor anywhere): the reply waits and the outbox is stuck.
    app = make_app(sqlite_url, smtp_url=relay.url, outbox_stuck_seconds="0.5")
    client = TestClient(create_app(app))
    assert pipeline.receive(app, mail(), source="file").reply
    assert client.get("/readyz").json()["checks"]["outbox"] == "ok"  # due, not for long
    time.sleep(0.7)
    response = client.get("/readyz")
    assert response.status_code == 503 and _only_words(response.json())["outbox"] == "stuck"
    mailer = Mailer(app.settings.smtp)  # type: ignore[arg-type]
    try:
        assert send_due(app, mailer) == 1
    finally:
        mailer.close()
    assert client.get("/readyz").status_code == 200
    # A relay that refuses defers the reply: the sender works, so that is not stuck.
    assert pipeline.receive(app, mail(sender="dee@example.org"), source="file").reply
    relay.fail_with(451)
    mailer = Mailer(app.settings.smtp)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            send_due(app, mailer)
            time.sleep(0.3)
    finally:
        mailer.close()
    with app.sessions() as s:
        assert s.scalar(select(Outgoing.status).where(Outgoing.to_addr == "dee@example.org")) == (
            "pending"
        )
    assert client.get("/readyz").json()["checks"]["outbox"] == "ok"


def test_not_ready_without_the_database_and_metrics_say_so(sqlite_url: str) -> None:
    app = make_app(sqlite_url, metrics_token=TOKEN)
    # The same App, its database now a PostgreSQL where nothing listens: refused at once.
    gone = db.make_engine(f"postgresql+psycopg://privbot@127.0.0.1:{free_port()}/privbot")
    cut = dataclasses.replace(app, engine=gone, sessions=db.make_sessions(gone))
    client = TestClient(create_app(cut))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert _only_words(response.json()) == {"database": "fail", "outbox": "fail"}
    assert "127.0.0.1" not in response.text and "psycopg" not in response.text
    assert client.get("/healthz").status_code == 200
    # The registry is the App's (built with the working sessions): its database figures
    # still come from the working database. A registry over the cut one says it is down.
    from privbot.ops.metrics import new_metrics

    down = parse(_exposition(dataclasses.replace(cut, metrics=new_metrics(cut.sessions))))
    assert value(down, "privbot_database_up") == 0
    assert not any(name.startswith("privbot_tickets") for name, _ in down)
    with app.sessions() as s:
        assert s.scalar(select(func.count(Message.id))) == 0
