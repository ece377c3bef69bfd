"""The staff desk from a terminal: an attachment saved to a file (recorded like a download),
the evidence marked checked, and listings that refuse a status privbot does not have."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import select

from privbot.models import Event
from testing.apps import make_app
from tests.cli.test_main import privbot
from tests.staff.test_evidence import PASSPORT, access_with_evidence

ADA = "ada@junocloud.me"


def _env(url: str) -> dict[str, str]:
    return {"PRIVBOT_DATABASE_URL": url, "PRIVBOT_STAFF_PASSWORD": "a long password"}


def test_tickets_attachment_saves_the_file_privately_and_records_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    app = make_app(sqlite_url)
    try:
        ticket_id, message_id = access_with_evidence(app)
    finally:
        app.close()
    env = _env(sqlite_url)
    assert privbot("staff", "add", ADA, env=env).returncode == 0
    shown = privbot("tickets", "show", f"JC-{ticket_id}", env=env)
    assert f"[attachment 0 of message {message_id}: dni.pdf (application/pdf, " in shown.stdout

    out = tmp_path / "evidence.pdf"
    args = ("tickets", "attachment", f"JC-{ticket_id}", str(message_id), "0", "-o", str(out))
    nobody = privbot(*args, env=env)  # who is opening it must be known: nothing written
    assert nobody.returncode == 1 and "--as EMAIL" in nobody.stderr and not out.exists()
    saved = privbot(*args, "--as", ADA, env=env)
    assert saved.returncode == 0, saved.stderr
    assert out.read_bytes() == PASSPORT
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # a passport copy: the owner's only
    assert "dni.pdf" in saved.stdout

    # An existing file is never overwritten; a number the message does not have is refused.
    twice = privbot(*args, "--as", ADA, env=env)
    assert twice.returncode == 1 and "exists" in twice.stderr
    assert out.read_bytes() == PASSPORT
    missing = tmp_path / "missing.bin"
    wrong = privbot("tickets", "attachment", str(ticket_id), str(message_id), "5",
                    "-o", str(missing), "--as", ADA, env=env)  # fmt: skip
    assert wrong.returncode == 1 and "no attachment 5" in wrong.stderr
    assert not missing.exists()
    to_stdout = privbot("tickets", "attachment", str(ticket_id), str(message_id), "0",
                        "-o", "-", "--as", ADA, env=env)  # fmt: skip
    assert to_stdout.returncode == 0 and "PASSPORT-OF-ANN" in to_stdout.stdout

    app = make_app(sqlite_url)
    try:
        with app.sessions() as s:
            opened = s.scalars(select(Event).where(Event.kind == "attachment_opened")).all()
        # Each opening that gave out bytes, and only those, with who, which message and file.
        assert [(e.actor, e.ticket_id, e.message_id, e.detail["index"], e.detail["filename"],
                 e.detail["via"]) for e in opened] == [
            (ADA, ticket_id, message_id, 0, "dni.pdf", "cli"),
            (ADA, ticket_id, message_id, 0, "dni.pdf", "cli"),
        ]  # fmt: skip
    finally:
        app.close()

    checked = privbot("tickets", "evidence-checked", str(ticket_id), "--as", ADA, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "evidence checked (1 attachment(s))" in checked.stdout
    run = privbot("retention", "run", env=env)
    assert "evidence attachments removed: 1" in run.stdout
    after = privbot("tickets", "show", str(ticket_id), "--json", env=env)
    attachments = [a for m in json.loads(after.stdout)["thread"] for a in m.get("attachments", [])]
    assert [(a["name"], a["removed"]) for a in attachments] == [("dni.pdf", True)]
    gone = privbot(*args[:-1], str(tmp_path / "again.pdf"), "--as", ADA, env=env)
    assert gone.returncode == 1 and "removed after the evidence was checked" in gone.stderr


def test_a_status_privbot_does_not_have_is_an_error_naming_the_ones_it_has(
    sqlite_url: str,
) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    bogus = privbot("messages", "list", "--status", "bogus", env=env)
    assert bogus.returncode == 2 and "(none)" not in bogus.stdout
    for status in ("received", "handled", "screened", "quarantined", "failed"):
        assert status in bogus.stderr
    assert "bogus" in bogus.stderr
    outbox = privbot("outbox", "list", "--status", "bogus", env=env)
    assert outbox.returncode == 2
    assert all(s in outbox.stderr for s in ("pending", "sending", "sent", "failed"))
    fine = privbot("messages", "list", "--status", "failed", env=env)
    assert fine.returncode == 0, fine.stderr


def test_help_of_the_new_commands() -> None:
    for command in (["tickets", "attachment"], ["tickets", "evidence-checked"],
                    ["outbox", "retry"]):  # fmt: skip
        result = privbot(*command, "--help")
        assert result.returncode == 0 and result.stdout.startswith("usage: privbot")
