"""The staff commands as a user runs them: accounts, tokens, tickets, opt-outs, `privbot web`."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from privbot import optouts, pipeline
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port, port_listening
from tests.cli.test_main import privbot


@pytest.mark.parametrize(
    "command",
    [
        ["staff"],
        ["staff", "add"],
        ["staff", "list"],
        ["staff", "disable"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["tickets", "show"],
        ["tickets", "assign"],
        ["tickets", "status"],
        ["tickets", "reply"],
        ["tickets", "note"],
        ["optouts", "export"],
        ["web"],
    ],
)
def test_every_new_command_has_help(command: list[str]) -> None:
    result = privbot(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: privbot")


def test_staff_accounts_add_list_disable(sqlite_url: str) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    added = privbot(
        "staff", "add", "Ada@JunoCloud.me", env={**env, "PRIVBOT_STAFF_PASSWORD": "a long password"}
    )
    assert added.returncode == 0, added.stderr
    assert "ada@junocloud.me" in added.stdout
    short = privbot("staff", "add", "bea@junocloud.me", env={**env, "PRIVBOT_STAFF_PASSWORD": "x"})
    assert short.returncode == 1 and "too short" in short.stderr
    twice = privbot(
        "staff", "add", "ada@junocloud.me", env={**env, "PRIVBOT_STAFF_PASSWORD": "a long password"}
    )
    assert twice.returncode == 1 and "exists already" in twice.stderr
    # No password in the environment and no terminal: a clear error, not a hang.
    no_tty = privbot("staff", "add", "cy@junocloud.me", env=env)
    assert no_tty.returncode == 1 and "PRIVBOT_STAFF_PASSWORD" in no_tty.stderr

    listed = privbot("staff", "list", env=env)
    assert listed.returncode == 0
    assert "ada@junocloud.me" in listed.stdout and "yes" in listed.stdout
    assert "bea@" not in listed.stdout

    off = privbot("staff", "disable", "ada@junocloud.me", env=env)
    assert off.returncode == 0 and "disabled" in off.stdout
    assert "no" in privbot("staff", "list", env=env).stdout.splitlines()[-1]
    missing = privbot("staff", "disable", "nobody@junocloud.me", env=env)
    assert missing.returncode == 1 and "no staff account" in missing.stderr
    app = make_app(sqlite_url)
    try:
        with app.sessions() as session:
            from privbot.staff import auth

            assert auth.active_emails(session) == []
            staff = auth.list_staff(session)[0]
            assert staff.password_hash.startswith("$argon2id$")
            assert "a long password" not in staff.password_hash
    finally:
        app.close()


def test_token_create_prints_the_token_last_and_it_opens_the_api(sqlite_url: str) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    result = privbot("token", "create", "marketing", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("pbt_") and " " not in token
    app = make_app(sqlite_url, secret_key="k")
    try:
        with app.sessions.begin() as session:
            optouts.apply(session, "x@example.org", ("marketing_email",), message=None, ticket=None)
        from fastapi.testclient import TestClient

        from privbot.web import create_app

        with TestClient(create_app(app)) as client:
            answer = client.get(
                "/api/v1/suppressions/x@example.org", headers={"Authorization": f"Bearer {token}"}
            )
        assert answer.json()["scopes"] == ["marketing_email"]
    finally:
        app.close()
    assert privbot("token", "create", "  ", env=env).returncode == 1


def test_tokens_have_scopes_are_listed_and_a_revoked_one_is_refused_at_once(
    sqlite_url: str,
) -> None:
    from fastapi.testclient import TestClient

    from privbot.web import create_app

    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    reader = privbot("token", "create", "marketing", env=env)
    writer = privbot("token", "create", "crm", "--scope", "write", env=env)
    assert reader.returncode == 0 and writer.returncode == 0, (reader.stderr, writer.stderr)
    assert "suppressions:read" in reader.stdout and "suppressions:write" in writer.stdout
    read_token, write_token = (r.stdout.strip().splitlines()[-1] for r in (reader, writer))
    twice = privbot("token", "create", "marketing", env=env)
    assert twice.returncode == 1 and "revoke it first" in twice.stderr  # revoke NAME: one token

    url = "/api/v1/suppressions/x@example.org"
    app = make_app(sqlite_url, secret_key="k")
    try:
        with TestClient(create_app(app)) as client:

            def status(token: str) -> int:
                return client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code

            assert status(read_token) == 200
            assert status(write_token) == 403  # may change the list, not read it
            listing = privbot("token", "list", env=env)
            assert listing.returncode == 0, listing.stderr
            lines = {line.split()[0]: line for line in listing.stdout.splitlines()[2:]}
            assert "suppressions:read" in lines["marketing"]
            assert "suppressions:write" in lines["crm"]

            revoked = privbot("token", "revoke", "marketing", env=env)
            assert revoked.returncode == 0, revoked.stderr
            assert status(read_token) == 401  # the next request, in this other process
    finally:
        app.close()
    again = privbot("token", "revoke", "marketing", env=env)
    assert again.returncode == 1 and "no live token" in again.stderr
    listing = privbot("token", "list", env=env).stdout
    [line] = [x for x in listing.splitlines() if x.startswith("marketing")]
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", line)) == 3  # made, used, revoked
    assert privbot("token", "create", "marketing", env=env).returncode == 0  # a new one, then


def test_tickets_show_assign_status_reply_note_from_the_terminal(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    app = make_app(sqlite_url)
    try:
        out = pipeline.receive(
            app,
            mail(
                sender="Ida <ida@example.org>",
                subject="Löschen",
                body="Please delete my account and all my data.",
            ),
            source="file",
        )
    finally:
        app.close()
    ref = f"JC-{out.ticket}"
    assert (
        privbot(
            "staff",
            "add",
            "ada@junocloud.me",
            env={**env, "PRIVBOT_STAFF_PASSWORD": "a long password"},
        ).returncode
        == 0
    )
    as_ada = {**env, "PRIVBOT_STAFF": "ada@junocloud.me"}

    shown = privbot("tickets", "show", ref, env=env)
    assert shown.returncode == 0, shown.stderr
    assert ref in shown.stdout and "type deletion" in shown.stdout
    assert "Please delete my account" in shown.stdout and "audit trail:" in shown.stdout
    # Nothing verified the sender (no trusted server): staff are told, with what was seen.
    assert "SENDER NOT VERIFIED: nothing proves it" in shown.stdout
    assert "verdict: none: no trusted receiving server configured" in shown.stdout
    assert "IDENTITY UNPROVEN: check that the requester is ida@example.org" in shown.stdout
    as_json = json.loads(privbot("tickets", "show", str(out.ticket), "--json", env=env).stdout)
    assert as_json["requester"] == "ida@example.org" and as_json["why"][0]["intents"]

    nobody = privbot("tickets", "assign", ref, "ada@junocloud.me", env=env)
    assert nobody.returncode == 1 and "--as EMAIL" in nobody.stderr
    stranger = privbot("tickets", "note", ref, "hi", "--as", "eve@example.org", env=env)
    assert stranger.returncode == 1 and "no active staff account" in stranger.stderr
    assert privbot("tickets", "assign", ref, "ada@junocloud.me", env=as_ada).returncode == 0
    bad = privbot("tickets", "status", ref, "awaiting_identity", env=as_ada)
    assert bad.returncode == 1 and "open, in_progress, done, rejected" in bad.stderr
    assert privbot("tickets", "status", ref, "in_progress", env=as_ada).returncode == 0
    assert privbot("tickets", "note", ref, "checked the account", env=as_ada).returncode == 0

    preview = privbot(
        "tickets", "reply", ref, "--template", "request_done", "--preview", env=as_ada
    )
    assert preview.returncode == 0, preview.stderr
    assert "To: ida@example.org" in preview.stdout and "Dear Ida" in preview.stdout
    body = tmp_path / "reply.txt"
    body.write_text("Dear Ida,\n\nyour account is deleted.\n", encoding="utf-8")
    sent = privbot("tickets", "reply", ref, "--body-file", str(body), env=as_ada)
    assert sent.returncode == 0 and "queued in the outbox" in sent.stdout
    assert privbot("tickets", "reply", ref, "--template", "nope", env=as_ada).returncode == 1
    assert privbot("tickets", "show", "JC-999", env=env).returncode == 1
    assert privbot("tickets", "show", "abc", env=env).returncode == 2

    listed = json.loads(privbot("tickets", "list", "--json", env=env).stdout)
    assert [(t["assignee"], t["status"]) for t in listed] == [("ada@junocloud.me", "in_progress")]
    outbox = json.loads(privbot("outbox", "list", "--json", env=env).stdout)
    assert sorted(o["kind"] for o in outbox) == ["auto", "staff"]
    trail = json.loads(privbot("tickets", "show", ref, "--json", env=env).stdout)["events"]
    staff_kinds = [e["kind"] for e in trail if e["actor"] == "ada@junocloud.me"]
    assert staff_kinds == ["assigned", "status_changed", "note", "staff_reply"]


def test_optouts_export_writes_the_csv(sqlite_url: str, tmp_path: Path) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    app = make_app(sqlite_url)
    try:
        with app.sessions.begin() as session:
            optouts.apply(
                session,
                "a@example.org",
                ("marketing_email", "targeted_ads"),
                message=None,
                ticket=None,
            )
    finally:
        app.close()
    out = privbot("optouts", "export", env=env)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "address,scope,since,by,ticket_id,source_message,withdrawn_at"
    assert [line.split(",")[:2] for line in lines[1:]] == [
        ["a@example.org", "marketing_email"],
        ["a@example.org", "targeted_ads"],
    ]
    target = tmp_path / "optouts.csv"
    assert privbot("optouts", "export", "-o", str(target), env=env).returncode == 0
    assert target.read_text(encoding="utf-8") == out.stdout


def test_optouts_export_hands_formulas_over_as_text(sqlite_url: str, tmp_path: Path) -> None:
    # A spreadsheet opening the export must not run "=cmd|..." from an opted-out address.
    formulas = ["=cmd|'/C calc'!A0@example.org", "+1@example.org", "-1@example.org",
                "@A1@example.org", "\t=1@example.org", "\r=1@example.org"]  # fmt: skip
    app = make_app(sqlite_url)
    try:
        with app.sessions.begin() as session:
            for address in [*formulas, "plain@example.org"]:
                optouts.apply(session, address, ("targeted_ads",), message=None, ticket=None)
    finally:
        app.close()
    target = tmp_path / "optouts.csv"
    out = privbot("optouts", "export", "-o", str(target), env={"PRIVBOT_DATABASE_URL": sqlite_url})
    assert out.returncode == 0, out.stderr
    with target.open(encoding="utf-8", newline="") as handle:
        addresses = sorted(row["address"] for row in csv.DictReader(handle))
    assert addresses == sorted(["'" + a for a in formulas] + ["plain@example.org"])


def test_privbot_web_serves_alone_and_stops_on_sigterm(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVBOT_")}
    env.update(
        {
            "PRIVBOT_DATABASE_URL": sqlite_url,
            "PRIVBOT_WEB": f"127.0.0.1:{port}",
            "PRIVBOT_SECRET_KEY": "k",
        }
    )
    log = tmp_path / "web.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "privbot", "web"], env=env, stdout=sink, stderr=sink
        )
    try:
        wait_until(lambda: port_listening(port), timeout=20, what="privbot web listening")
        response = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
        assert response.status_code == 200 and 'type="password"' in response.text
        assert httpx.get(f"http://127.0.0.1:{port}/queue").status_code == 303
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and f"127.0.0.1:{port}" in text
    # A port already taken is one clear line.
    with socket_on(port2 := free_port()):
        taken = privbot(
            "web", env={"PRIVBOT_DATABASE_URL": sqlite_url, "PRIVBOT_WEB": f"127.0.0.1:{port2}"}
        )
    assert taken.returncode == 2 and "PRIVBOT_WEB" in taken.stderr
    assert "Traceback" not in taken.stderr


class socket_on:
    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
