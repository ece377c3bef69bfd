"""Strict settings: a name that is no setting, in the environment or the TOML file, stops
start-up with one line naming it and the closest setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from privbot.config import (
    ENVIRONMENT,
    FILE,
    OTHER_VARIABLES,
    ConfigError,
    load_settings,
    read_settings,
    setting_names,
)
from tests.cli.test_main import privbot

ROOT = Path(__file__).resolve().parents[1]


def _refused(env: dict[str, str] | None = None, toml: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env or {}, config_file=toml)
    return str(caught.value)


def test_an_unknown_variable_names_the_closest_setting() -> None:
    assert _refused({"PRIVBOT_IMAP_URLL": "imap://u:p@h/INBOX"}) == (
        "PRIVBOT_IMAP_URLL: unknown setting; did you mean PRIVBOT_IMAP_URL?"
    )
    assert _refused({"PRIVBOT_REPLYCAP": "2"}).endswith("did you mean PRIVBOT_REPLY_CAP?")
    # Nothing close: no guess (the shared prefix alone must not make one).
    assert _refused({"PRIVBOT_ZZZ": "1"}) == (
        "PRIVBOT_ZZZ: unknown setting (the README's settings table has them)"
    )
    # Several: the first named, the others listed.
    message = _refused({"PRIVBOT_WEBB": "x", "PRIVBOT_ADRESS": "a@b.org"})
    assert message.startswith("PRIVBOT_ADRESS: unknown setting; did you mean PRIVBOT_ADDRESS?")
    assert "also unknown: PRIVBOT_WEBB" in message
    # Other variables are not privbot's business.
    assert load_settings({"PATH": "/bin", "PRIVBOTS": "x"}).reply_cap == 3


def test_variables_read_elsewhere_pass_in_the_environment_only(tmp_path: Path) -> None:
    env = dict.fromkeys(OTHER_VARIABLES, "1")
    assert load_settings(env).reply_cap == 3
    toml = tmp_path / "privbot.toml"
    toml.write_text('staff_password = "hunter2"\n')
    assert _refused(toml=toml).startswith(f"--config {toml}: staff_password: unknown setting")
    # A near miss of one of them is still refused, with it as the suggestion.
    assert _refused({"PRIVBOT_STAFF_PASWORD": "x"}).endswith("did you mean PRIVBOT_STAFF_PASSWORD?")


def test_an_unknown_key_in_the_file_is_refused_as_spelt(tmp_path: Path) -> None:
    toml = tmp_path / "privbot.toml"
    toml.write_text('imap_urll = "imap://u:p@mail.example/INBOX"\n')
    assert _refused(toml=toml) == (
        f"--config {toml}: imap_urll: unknown setting; did you mean imap_url?"
    )
    toml.write_text("[privbot]\nPRIVBOT_REPLY_CAPP = 2\n")
    assert _refused(toml=toml).endswith(
        "PRIVBOT_REPLY_CAPP: unknown setting; did you mean PRIVBOT_REPLY_CAP?"
    )
    # Beside [privbot] a key would be ignored: refused. So is a table inside it.
    toml.write_text("reply_cap = 2\n[privbot]\ndue_months = 1\n")
    assert _refused(toml=toml).endswith("reply_cap: unknown setting; did you mean reply_cap?")
    toml.write_text("[privbot]\ndue_months = 1\n[privbot.imap]\nurl = 'x'\n")
    assert _refused(toml=toml).endswith("imap: unknown setting; did you mean imap_url?")
    # Known keys, both spellings, still work.
    toml.write_text("[privbot]\nreply_cap = 2\nPRIVBOT_DUE_MONTHS = 2\n")
    settings = load_settings({}, config_file=toml)
    assert (settings.reply_cap, settings.due_months) == (2, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PRIVBOT_LOG_FORMAT", "xml"), ("PRIVBOT_METRICS_LISTEN", "9100"),
     ("PRIVBOT_OUTBOX_STUCK_SECONDS", "0")],
)  # fmt: skip
def test_the_operations_settings_name_themselves(name: str, value: str) -> None:
    assert _refused({name: value}).startswith(f"{name}: ")


def test_sources_say_where_each_value_came_from(tmp_path: Path) -> None:
    toml = tmp_path / "privbot.toml"
    toml.write_text('reply_cap = 5\ndatabase_url = "sqlite:///f.db"\n')
    raw, sources = read_settings(
        {"PRIVBOT_REPLY_CAP": "2", "PRIVBOT_FLOOD": "9"}, config_file=toml
    )  # fmt: skip
    assert raw == {"PRIVBOT_REPLY_CAP": "2", "PRIVBOT_DATABASE_URL": "sqlite:///f.db"}
    assert sources == {"PRIVBOT_REPLY_CAP": ENVIRONMENT, "PRIVBOT_DATABASE_URL": FILE}


def _names_used_in_the_repository() -> set[str]:
    """Every PRIVBOT_* name written in code, scripts and CI (not in docs)."""
    names: set[str] = set()
    folders = ["src", "tests", "testing", "bench", "scripts", ".ci"]
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if not path.is_file() or path.suffix in (".eml", ".jsonl", ".tsv", ".pickle"):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            names.update(re.findall(r"\bPRIVBOT_[A-Z0-9_]*[A-Z0-9]\b", text))
    return names


def test_every_privbot_variable_the_code_uses_is_known() -> None:
    used = _names_used_in_the_repository()
    assert "PRIVBOT_SCREENSHOTS" in used and "PRIVBOT_DATABASE_URL" in used  # the walk works
    placeholders = {"PRIVBOT_X"}  # "each `PRIVBOT_X=value` line" (tests/test_deploy.py)
    unknown = used - setting_names() - OTHER_VARIABLES - placeholders
    # A test may write a made-up name to see it refused; those are here, and nowhere else.
    made_up = {n for n in unknown if n in Path(__file__).read_text(encoding="utf-8")}
    assert unknown == made_up, f"read somewhere but refused at start-up: {sorted(unknown)}"


def test_start_up_stops_on_a_typo_with_one_line(tmp_path: Path) -> None:
    env = {"PRIVBOT_IMAP_URLL": "imap://u:p@h/INBOX",
           "PRIVBOT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}  # fmt: skip
    result = privbot("tickets", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "privbot: PRIVBOT_IMAP_URLL: unknown setting; did you mean PRIVBOT_IMAP_URL?"
    ]
    toml = tmp_path / "privbot.toml"
    toml.write_text('imap_urll = "imap://u:p@h/INBOX"\n')
    result = privbot("--config", str(toml), "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"privbot: --config {toml}: imap_urll: unknown setting; did you mean imap_url?"
    )
    assert not (tmp_path / "privbot.db").exists()  # stopped before anything was opened
