"""`privbot config check` against a real Dovecot, an SMTP relay with AUTH and the database:
every setting with its source and secrets masked, each connection tried, exit 1 on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from testing.apps import make_app
from testing.servers import CaptureRelay, Dovecot, free_port
from tests.cli.test_main import privbot

RELAY_PASSWORD = "relay-s3cret-42"
TOKEN = "metrics-t0ken-77"


@pytest.fixture
def auth_relay() -> Iterator[CaptureRelay]:
    with CaptureRelay(auth=("bot", RELAY_PASSWORD)) as relay:
        yield relay


def _settings(stdout: str) -> dict[str, tuple[str, str]]:
    """NAME -> (source, value) from the settings part of the output."""
    rows = {}
    for line in stdout.split("checks:")[0].splitlines()[1:]:
        name, source, *value = line.split()
        rows[name] = (source, " ".join(value))
    return rows


def _checks(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in stdout.split("checks:")[1].strip().splitlines():
        name, outcome, detail = line.split(maxsplit=2)
        rows[name] = (outcome, detail)
    return rows


def test_everything_reachable(
    db_url: str, dovecot: Dovecot, auth_relay: CaptureRelay, tmp_path: Path
) -> None:
    make_app(db_url).close()  # migrated, as after `db upgrade`
    toml = tmp_path / "privbot.toml"
    toml.write_text(f'[privbot]\nreply_cap = 5\nsmtp_url = "{auth_relay.url}"\n')
    env = {"PRIVBOT_DATABASE_URL": db_url, "PRIVBOT_IMAP_URL": dovecot.imap_url(),
           "PRIVBOT_REPLY_CAP": "2", "PRIVBOT_METRICS_TOKEN": TOKEN,
           "PRIVBOT_SECRET_KEY": "cookie-k3y-99"}  # fmt: skip
    result = privbot("--config", str(toml), "config", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for secret in (RELAY_PASSWORD, dovecot.password, TOKEN, "cookie-k3y-99"):
        assert secret not in out + result.stderr
    settings = _settings(out)
    assert settings["PRIVBOT_REPLY_CAP"] == ("environment", "2")  # the environment wins
    assert settings["PRIVBOT_SMTP_URL"] == (
        "file", f"smtp://bot:***@127.0.0.1:{auth_relay.port}"
    )  # fmt: skip
    assert settings["PRIVBOT_IMAP_URL"][0] == "environment"
    assert ":***@" in settings["PRIVBOT_IMAP_URL"][1]
    assert settings["PRIVBOT_METRICS_TOKEN"] == ("environment", "***")
    assert settings["PRIVBOT_SECRET_KEY"] == ("environment", "***")
    assert settings["PRIVBOT_DUE_MONTHS"] == ("default", "1")
    assert settings["PRIVBOT_WEB"] == ("default", "127.0.0.1:8025")
    assert settings["PRIVBOT_CHAT_RATE"] == ("default", "20/60")
    if "postgresql" in db_url:  # its password, if any, masked too
        assert settings["PRIVBOT_DATABASE_URL"][0] == "environment"
    checks = _checks(out)
    assert checks["database"][0] == "ok" and "schema current" in checks["database"][1]
    assert checks["imap"][0] == "ok"
    assert f"logged in as {dovecot.user}" in checks["imap"][1]
    assert "serve will create privbot/processed, privbot/failed" in checks["imap"][1]
    assert checks["smtp"][0] == "ok" and "AUTH as bot" in checks["smtp"][1]
    assert auth_relay.auth_attempts == [("bot", True)]
    assert auth_relay.messages == []  # nothing sent
    # Nothing was changed either: the folders were not made.
    with dovecot.client() as client:
        assert not client.folder_exists("privbot/processed")


def test_each_failure_is_named_and_fails_the_check(
    sqlite_url: str, dovecot: Dovecot, auth_relay: CaptureRelay, tmp_path: Path
) -> None:
    wrong_imap = (f"imap://{quote(dovecot.user, safe='')}:not-the-password@127.0.0.1:"
                  f"{dovecot.imap_port}/INBOX")  # fmt: skip
    wrong_smtp = f"smtp://bot:not-the-password@127.0.0.1:{auth_relay.port}"
    gone = f"postgresql+psycopg://privbot:db-pw-55@127.0.0.1:{free_port()}/privbot"
    env = {"PRIVBOT_DATABASE_URL": gone, "PRIVBOT_IMAP_URL": wrong_imap,
           "PRIVBOT_SMTP_URL": wrong_smtp}  # fmt: skip
    result = privbot("config", "check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    checks = _checks(result.stdout)
    assert checks["database"][0] == "FAIL" and "OperationalError" in checks["database"][1]
    assert checks["imap"][0] == "FAIL" and "LoginError" in checks["imap"][1]
    assert checks["smtp"][0] == "FAIL" and "535" in checks["smtp"][1]
    # smtplib tries each mechanism offered (PLAIN, LOGIN): every one refused.
    assert auth_relay.auth_attempts and {ok for _, ok in auth_relay.auth_attempts} == {False}
    assert result.stderr.strip().splitlines()[-1] == (
        "privbot: config check: database, imap, smtp failed"
    )
    assert "db-pw-55" not in result.stdout and "not-the-password" not in result.stdout
    assert "postgresql+psycopg://privbot:***@127.0.0.1" in result.stdout

    # One failing is enough; what is not configured is said, not failed.
    env = {"PRIVBOT_DATABASE_URL": sqlite_url, "PRIVBOT_SMTP_URL": wrong_smtp}
    result = privbot("config", "check", cwd=tmp_path, env=env)
    assert result.returncode == 1
    checks = _checks(result.stdout)
    assert checks["database"][0] == "ok" and checks["smtp"][0] == "FAIL"
    assert checks["imap"] == ("ok", "not configured (PRIVBOT_IMAP_URL)")


def test_a_new_sqlite_database_is_not_created(tmp_path: Path) -> None:
    result = privbot("config", "check", cwd=tmp_path,
                     env={"PRIVBOT_DATABASE_URL": "sqlite:///fresh.db"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no database at fresh.db yet" in _checks(result.stdout)["database"][1]
    assert not (tmp_path / "fresh.db").exists()
