"""Start-up: data files are validated and are the only source of what is said."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from privbot.app import data_folder, load_understanding
from privbot.config import ConfigError, load_settings
from privbot.pipeline.reply import answer_text
from privbot.replies import RepliesError
from testing.apps import make_app


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    intents, replies = tmp_path / "intents", tmp_path / "replies"
    shutil.copytree(data_folder("intents"), intents)
    shutil.copytree(data_folder("replies"), replies)
    return intents, replies


def _settings(intents: Path, replies: Path) -> object:
    return load_settings({"PRIVBOT_INTENTS_DIR": str(intents), "PRIVBOT_REPLIES_DIR": str(replies)})


def test_a_broken_intent_file_stops_start_up_naming_it(tmp_path: Path) -> None:
    intents, replies = _copy(tmp_path)
    path = intents / "deletion.toml"
    path.write_text(path.read_text().replace("priority = 50", 'priority = "high"'))
    with pytest.raises(ConfigError) as caught:
        load_understanding(_settings(intents, replies))  # type: ignore[arg-type]
    assert "deletion.toml" in str(caught.value) and "priority" in str(caught.value)


def test_a_missing_intent_template_stops_start_up_naming_it(tmp_path: Path) -> None:
    intents, replies = _copy(tmp_path)
    (replies / "en" / "intents" / "correction.txt.j2").unlink()
    with pytest.raises(RepliesError) as caught:
        load_understanding(_settings(intents, replies))  # type: ignore[arg-type]
    assert "correction.txt.j2" in str(caught.value)


def test_changing_the_policy_changes_what_is_cited(tmp_path: Path, sqlite_url: str) -> None:
    intents, replies = _copy(tmp_path)
    policy = replies / "policy.md"
    old = "Most browsers allow you to reject all cookies"
    new_words = "Every modern browser lets you reject all cookies in its settings"
    assert old in policy.read_text()
    policy.write_text(policy.read_text().replace(old, new_words))
    app = make_app(sqlite_url, intents_dir=str(intents), replies_dir=str(replies))
    body = answer_text(app, "How can I reject cookies in my browser?").body
    assert new_words in " ".join(line.removeprefix("> ") for line in body.splitlines())


def test_a_phrase_added_as_data_is_understood(tmp_path: Path, sqlite_url: str) -> None:
    intents, replies = _copy(tmp_path)
    before = make_app(sqlite_url).classifier.classify("Please yeet the zorblax, thanks.")
    assert "deletion" not in before.intents
    path = intents / "deletion.toml"
    text = path.read_text()
    added = 'en = ["yeet the zorblax", "delete my account"'
    path.write_text(text.replace('en = ["delete my account"', added, 1))
    app = make_app(sqlite_url, intents_dir=str(intents), replies_dir=str(replies))
    assert "deletion" in app.classifier.classify("Please yeet the zorblax, thanks.").intents


def test_another_process_learns_a_correction_at_its_refresh(sqlite_url: str) -> None:
    from privbot.models import Example, utcnow

    text = "Please yeet the zorblax, thanks."
    serving, staff_side = make_app(sqlite_url), make_app(sqlite_url)
    assert "deletion" not in serving.classifier.classify(text).intents
    assert serving.classifier.refresh(serving.sessions) is False  # nothing new
    with staff_side.sessions.begin() as s:
        s.add(Example(text=text, intent="deletion", language="en", created_by="ada@x",
                      created_at=utcnow()))  # fmt: skip
    assert serving.classifier.refresh(serving.sessions) is True
    assert "deletion" in serving.classifier.classify(text).intents
