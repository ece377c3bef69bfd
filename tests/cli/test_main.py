"""The `privbot` command as a user runs it: help, ingest, listings as JSON, db upgrade, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing.apps import mail

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "src" / "privbot" / "cli" / "demo_mail"


def privbot(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVBOT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "privbot", *args],
        env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["ingest"], ["db"], ["db", "upgrade"], ["tickets", "list"],
     ["outbox", "list"], ["messages", "list"], ["demo"]],
)  # fmt: skip
def test_every_command_has_help(command: list[str]) -> None:
    result = privbot(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: privbot")


def test_ingest_then_list_tickets_and_outbox_as_json(db_url: str, tmp_path: Path) -> None:
    env = {"PRIVBOT_DATABASE_URL": db_url}
    human = tmp_path / "human.eml"
    human.write_bytes(mail(sender="lena@example.org", subject="Hello", message_id="lena1@x"))
    bounce = EXAMPLES / "04-bounce.eml"
    result = privbot("ingest", str(human), str(bounce), str(tmp_path / "missing.eml"), env=env)
    assert result.returncode == 1  # the missing file is reported, the others still done
    assert "missing.eml" in result.stderr and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert "handled" in lines[0] and "ticket JC-" in lines[0]
    assert "screened" in lines[1] and "bounce" in lines[1]

    tickets = json.loads(privbot("tickets", "list", "--json", env=env).stdout)
    assert len(tickets) == 1
    ticket = tickets[0]
    for key in ("id", "status", "requester", "subject", "intents", "created_at", "due_at",
                "message_ids"):  # fmt: skip
        assert key in ticket
    assert ticket["requester"] == "lena@example.org"
    assert ticket["message_ids"] == ["lena1@x"]

    outbox = json.loads(privbot("outbox", "list", "--json", env=env).stdout)
    assert [(o["to"], o["status"], o["attempts"], o["in_reply_to"]) for o in outbox] == [
        ("lena@example.org", "pending", 0, "lena1@x")
    ]
    assert outbox[0]["subject"] == f"Re: Hello [JC-{ticket['id']}]"

    messages = json.loads(privbot("messages", "list", "--json", env=env).stdout)
    assert sorted(m["status"] for m in messages) == ["handled", "screened"]

    again = privbot("ingest", str(human), env=env)
    assert "already stored" in again.stdout
    assert len(json.loads(privbot("outbox", "list", "--json", env=env).stdout)) == 1


def test_db_upgrade_is_repeatable(sqlite_url: str) -> None:
    env = {"PRIVBOT_DATABASE_URL": sqlite_url}
    assert privbot("db", "upgrade", env=env).returncode == 0
    second = privbot("db", "upgrade", env=env)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_unreachable_database_is_one_clear_line() -> None:
    env = {"PRIVBOT_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = privbot("tickets", "list", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("privbot: database error (PRIVBOT_DATABASE_URL)")


def test_serve_without_intake_says_what_is_missing(sqlite_url: str) -> None:
    result = privbot("serve", env={"PRIVBOT_DATABASE_URL": sqlite_url})
    assert result.returncode == 2
    assert "PRIVBOT_IMAP_URL or PRIVBOT_LISTEN" in result.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = privbot("--log-level", "warning", "demo", "--no-wait", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "What privbot did with each message" in out
    # Four people wrote; the bounce, the out-of-office and the list post were screened.
    assert out.count("screened, no reply") == 3
    assert "opt-out recorded (marketing_email" in out
    assert "access/awaiting_identity" in out and "answered (JC-" in out
    replies = out.split("Replies it sent")[1]
    assert replies.count("auto-replied") == 4
    assert "mailer-daemon" not in replies.lower()


def test_classify_json_one_object_per_file() -> None:
    files = [str(EXAMPLES / n) for n in ("01-optout.eml", "02-access-de.eml", "04-bounce.eml")]
    result = privbot("classify", "--json", *files)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in rows] == files
    optout, access, bounce = rows
    assert optout["intents"] == ["opt_out"] and optout["skip"] is None
    assert optout["language"] == "en" and 0 < optout["confidence"] <= 1
    assert access["intents"] == ["data_access"] and access["sections"] == ["Your rights"]
    assert access["language"] == "de"
    assert bounce["skip"] and bounce["skip"].startswith("bounce")
    assert set(rows[0]) >= {"file", "intents", "skip", "sections", "language", "confidence"}


def test_ask_answers_with_the_policy_words() -> None:
    result = privbot("ask", "How do I opt out of cookies?")
    assert result.returncode == 0, result.stderr
    assert 'section "Cookies"' in result.stdout
    assert "> " in result.stdout
    empty = privbot("ask", "  ")
    assert empty.returncode == 2 and "Traceback" not in empty.stderr


def test_eval_prints_figures(corpora: Path) -> None:
    result = privbot("eval", "--no-progress", "--corpora", str(corpora), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.lower()
    assert "macro-f1" in out and "prec" in out and "confusion" in out
    assert "gdpr request letters" in out and "privacyqa" in out


def _small_intents(tmp_path: Path) -> Path:
    """A copy of the intent files with a small bank of its own (16 mails)."""
    intents = tmp_path / "intents"
    (intents / "examples").mkdir(parents=True)
    for source in (REPO / "intents").glob("*.toml"):
        (intents / source.name).write_bytes(source.read_bytes())
    rows = [
        ("Please delete my account and all my data.", ["deletion"], []),
        ("Stop sending me the newsletter.", ["opt_out"], []),
        ("Which cookies do you set?", ["question"], ["Cookies"]),
        ("Send me a copy of my personal data.", ["data_access"], []),
    ]
    lines = [
        json.dumps(
            {"id": f"en-{i:03d}", "lang": "en", "headers": {"From": f"P <p{i}@example.org>"},
             "body": body, "intents": labels, "skip": False, "sections": sections}
        )
        for i, (body, labels, sections) in enumerate(rows * 4)
    ]  # fmt: skip
    (intents / "examples" / "en.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return intents


def test_train_retrains_and_reports_a_cross_validation(tmp_path: Path) -> None:
    intents = _small_intents(tmp_path)  # train reads it afresh
    stale = intents / "examples" / ".model-stale.pickle"
    stale.write_bytes(b"not a model")
    result = privbot(
        "train", "--folds", "2",
        env={"PRIVBOT_INTENTS_DIR": str(intents), "PRIVBOT_DATABASE_URL": "sqlite://"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained on 16 examples" in result.stdout and "question 4" in result.stdout
    assert "2-fold cross-validation on the bank" in result.stdout
    assert not stale.exists()  # train starts afresh
    (model,) = (intents / "examples").glob(".model-*.pickle")
    assert model.stat().st_size > 0


def test_the_model_is_cached_in_the_model_cache_dir(tmp_path: Path) -> None:
    # A read-only install (deploy/privbot.service) keeps its model in the state folder.
    intents, models = _small_intents(tmp_path), tmp_path / "state"
    models.mkdir()
    (models / ".model-stale.pickle").write_bytes(b"not a model")
    env = {"PRIVBOT_INTENTS_DIR": str(intents), "PRIVBOT_MODEL_CACHE_DIR": str(models),
           "PRIVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'privbot.db'}"}  # fmt: skip
    result = privbot("train", "--folds", "0", env=env)
    assert result.returncode == 0, result.stderr
    (model,) = models.glob(".model-*.pickle")
    assert f"model: {model}" in result.stdout
    assert not list((intents / "examples").glob(".model-*"))  # nothing beside the bank
    trained = model.stat().st_ino
    # The next start loads that model instead of training (which would write a new file).
    asked = privbot("ask", "Please delete my account.", env=env)
    assert asked.returncode == 0, asked.stderr
    assert [p.stat().st_ino for p in models.glob(".model-*.pickle")] == [trained]
