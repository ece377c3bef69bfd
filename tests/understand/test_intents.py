"""Loading and validating the intent data files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from privbot.understand import Classifier, Intents, IntentsError, load_intents
from privbot.understand.intents import REQUIRED_INTENTS
from privbot.understand.policy import Policy

from .conftest import REPO


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "intents"
    shutil.copytree(REPO / "intents", target)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_real_files_load(intents: Intents) -> None:
    assert set(REQUIRED_INTENTS) <= set(intents.names)
    codes = {lang.code for lang in intents.languages}
    assert {"en", "de", "fr", "es", "it", "nl", "pt"} <= codes
    assert intents.get("opt_out").group("scopes")


def test_phrase_list_of_wrong_type_names_file_and_key(data_dir: Path) -> None:
    path = data_dir / "opt_out.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index("[phrases]\n")
    de_line = text.index("\nde = ", start) + 1
    end = text.index("\n", de_line)
    path.write_text(text[:de_line] + 'de = "abmelden"' + text[end:], encoding="utf-8")
    with pytest.raises(IntentsError) as err:
        load_intents(data_dir)
    assert str(err.value) == "intents/opt_out.toml: phrases.de: must be a list of strings"


def test_invalid_toml_is_reported_with_file(data_dir: Path) -> None:
    (data_dir / "deletion.toml").write_text("name = \n", encoding="utf-8")
    with pytest.raises(IntentsError, match=r"intents/deletion\.toml: invalid TOML"):
        load_intents(data_dir)


def test_missing_intent_file(data_dir: Path) -> None:
    (data_dir / "correction.toml").unlink()
    with pytest.raises(IntentsError, match="missing intent files: correction"):
        load_intents(data_dir)


def test_unknown_language(data_dir: Path) -> None:
    _replace(data_dir / "deletion.toml", "\n[phrases]\n", '\n[phrases]\nxx = ["weg"]\n')
    with pytest.raises(IntentsError, match=r"deletion\.toml: phrases\.xx: unknown language"):
        load_intents(data_dir)


def test_name_must_match_file(data_dir: Path) -> None:
    _replace(data_dir / "question.toml", 'name = "question"', 'name = "questions"')
    with pytest.raises(IntentsError, match=r"question\.toml: name: 'questions' does not match"):
        load_intents(data_dir)


def test_unknown_key_is_rejected(data_dir: Path) -> None:
    _replace(data_dir / "other.toml", "priority = 0", "priority = 0\nprority = 3")
    with pytest.raises(IntentsError, match=r"other\.toml: unknown keys: prority"):
        load_intents(data_dir)


def test_policy_section_must_exist(data_dir: Path, policy: Policy) -> None:
    _replace(data_dir / "correction.toml", '"Updating information"', '"Updating info"')
    with pytest.raises(IntentsError, match=r"correction\.toml: policy_sections: 'Updating info'"):
        Classifier.build(load_intents(data_dir), policy)


def test_adding_a_phrase_is_a_data_change(data_dir: Path, policy: Policy) -> None:
    text = "Bitte schmeißt mich aus der Kartei"
    before = Classifier.build(load_intents(data_dir), policy).classify(text)
    assert before.intents == ("other",)
    _replace(data_dir / "opt_out.toml", "\n[strong]\n", "\n[strong]\nel = []\n")
    with pytest.raises(IntentsError, match=r"strong\.el: must not be empty"):
        load_intents(data_dir)
    _replace(data_dir / "opt_out.toml", "el = []\n", "")
    _replace(
        data_dir / "opt_out.toml", 'de = ["abmelden", ', 'de = ["aus der kartei", "abmelden", '
    )
    after = Classifier.build(load_intents(data_dir), policy).classify(text)
    assert after.intents == ("opt_out",)
