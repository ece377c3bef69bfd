"""Settings: defaults, environment, TOML file, and one clear line for every bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from privbot.config import ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert s.database_url == "sqlite:///privbot.db"
    assert s.address == "support@junocloud.me"
    assert s.imap is None and s.smtp is None and s.listen is None
    assert s.processed_folder == "privbot/processed"


def test_urls_are_parsed() -> None:
    s = load_settings(
        {
            "PRIVBOT_IMAP_URL": "imaps://support%40junocloud.me:p%2Fw@mail.example:1993/Privacy",
            "PRIVBOT_SMTP_URL": "smtp://bot:pw@relay.example:587?starttls=1",
            "PRIVBOT_LISTEN": "127.0.0.1:2525",
            "PRIVBOT_ADDRESS": "Privacy@JunoCloud.me",
        }
    )
    assert s.imap is not None and s.smtp is not None
    assert (s.imap.user, s.imap.password, s.imap.port, s.imap.folder, s.imap.ssl) == (
        "support@junocloud.me", "p/w", 1993, "Privacy", True,
    )  # fmt: skip
    assert (s.smtp.host, s.smtp.port, s.smtp.starttls, s.smtp.user) == (
        "relay.example", 587, True, "bot",
    )  # fmt: skip
    assert s.listen == ("127.0.0.1", 2525)
    assert s.address == "privacy@junocloud.me"
    assert s.domain == "junocloud.me"


def test_toml_file_is_overridden_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "privbot.toml"
    config.write_text('database_url = "sqlite:///from-file.db"\nreply_cap = 5\n')
    s = load_settings({"PRIVBOT_REPLY_CAP": "2"}, config_file=config)
    assert s.database_url == "sqlite:///from-file.db"
    assert s.reply_cap == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRIVBOT_DATABASE_URL", "mysql://x@y/z"),
        ("PRIVBOT_DATABASE_URL", "not a url"),
        ("PRIVBOT_ADDRESS", "support"),
        ("PRIVBOT_IMAP_URL", "http://host/INBOX"),
        ("PRIVBOT_IMAP_URL", "imap://host/INBOX"),
        ("PRIVBOT_IMAP_URL", "imap://u:p@host:notaport/INBOX"),
        ("PRIVBOT_SMTP_URL", "smtps://host:465?starttls=1"),
        ("PRIVBOT_LISTEN", "2525"),
        ("PRIVBOT_REPLY_CAP", "many"),
    ],
)
def test_bad_setting_names_itself(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert str(caught.value).startswith(name)


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PRIVBOT_IMAP_URL": "imap://u:hunter2@host:bad/INBOX"})
    assert "hunter2" not in str(caught.value)


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PRIVBOT_SMTP_URL": "smtp://relay:99999", "PRIVBOT_DATABASE_URL": ""}
    result = subprocess.run(
        [sys.executable, "-m", "privbot.cli", "tickets", "list"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PRIVBOT_SMTP_URL" in lines[0], result.stderr


def test_cli_reports_a_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "privbot.cli", "--config", str(tmp_path / "nope.toml"), "db",
         "upgrade"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"privbot: --config: file not found: {tmp_path / 'nope.toml'}"
    ]
