"""Settings: defaults, environment, TOML file, and one clear line for every bad value."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from privbot.config import ConfigError, Settings, env_name, load_settings


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


def test_dns_servers_and_the_receivers_authserv_id() -> None:
    s = load_settings({"PRIVBOT_DNS_SERVERS": "127.0.0.1:5353, [::1]:53, 10.0.0.53"})
    assert s.dns_servers == (("127.0.0.1", 5353), ("::1", 53), ("10.0.0.53", 53))
    assert Settings().dns_servers == () and Settings().dns_timeout == 2.0  # the system's
    # Unset, the SMTP receiver names itself after the domain it greets with; set, it is that.
    assert Settings().receiver_authserv_id == "junocloud.me"
    configured = load_settings({"PRIVBOT_TRUSTED_AUTHSERV_ID": "MX.JunoCloud.me"})
    assert configured.receiver_authserv_id == "mx.junocloud.me"
    for name, value in [("PRIVBOT_DNS_SERVERS", "dns.example"),
                        ("PRIVBOT_DNS_SERVERS", "127.0.0.1:0"),
                        ("PRIVBOT_TRUSTED_AUTHSERV_ID", "mx.example; dmarc=pass")]:  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value})


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
        ("PRIVBOT_REPLY_CAP_PER_DOMAIN", "-1"),
        ("PRIVBOT_SMTP_MAX_CONNECTIONS", "0"),
        ("PRIVBOT_SMTP_MAX_PER_CLIENT", "ten"),
        ("PRIVBOT_SMTP_IDLE_SECONDS", "-5"),
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
        [sys.executable, "-m", "privbot", "tickets", "list"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PRIVBOT_SMTP_URL" in lines[0], result.stderr


def test_cli_reports_a_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "privbot", "--config", str(tmp_path / "nope.toml"), "db",
         "upgrade"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"privbot: --config: file not found: {tmp_path / 'nope.toml'}"
    ]


# -- the README documents every setting, and documents nothing that does not exist ----------

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented_settings() -> set[str]:
    """PRIVBOT_* names in the first column of the README's settings table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| setting | meaning | default |")
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names.update(re.findall(r"`(PRIVBOT_[A-Z_]+)`", line.split("|")[1]))
    return names


def test_every_setting_is_documented_in_the_readme() -> None:
    fields = {env_name(f.name) for f in dataclasses.fields(Settings)}
    missing = fields - _documented_settings()
    assert not missing, f"settings missing from the README's table: {sorted(missing)}"


def test_every_documented_setting_exists_and_is_read() -> None:
    fields = {env_name(f.name): f.name for f in dataclasses.fields(Settings)}
    documented = _documented_settings()
    unknown = documented - set(fields)
    assert not unknown, f"the README documents settings privbot does not have: {sorted(unknown)}"
    # Each one is really read: a bad value is refused, naming the setting (or, for free text,
    # a given value arrives in its field).
    for name in sorted(documented):
        try:
            settings = load_settings({name: "\x00not valid\x00"})
        except ConfigError as exc:
            assert name in str(exc)
            continue
        assert getattr(settings, fields[name]) != getattr(Settings(), fields[name]), name
