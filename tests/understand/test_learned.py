"""The learned layer: concepts matched after stemming in every language, a model trained
from examples kept as data, cached by a fingerprint of its inputs, explained by features."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbot.understand import Classifier
from privbot.understand.concepts import Concepts, load_concepts
from privbot.understand.learned import (
    Example,
    concept_features,
    inputs_key,
    read_bank,
    train,
)
from privbot.understand.sentences import split_sentences

REPO = Path(__file__).resolve().parents[2]
INTENTS = REPO / "intents"


@pytest.fixture(scope="module")
def concepts() -> Concepts:
    return load_concepts(INTENTS / "_concepts.toml")


def _frames(concepts: Concepts, text: str, language: str) -> set[str]:
    return set(concept_features(concepts, split_sentences(text, ""), language))


@pytest.mark.parametrize(
    ("text", "language", "frame"),
    [
        ("Bitte löschen Sie mein Konto.", "de", "f:do:act_delete+obj_account"),
        ("Poistakaa tilini ja kaikki tietoni.", "fi", "f:do:act_delete+obj_account"),
        ("Please stop sending me the newsletter.", "en", "f:do:act_stop+obj_marketing"),
        ("Do not unsubscribe me from the newsletter.", "en", "f:neg:act_stop+obj_marketing"),
        ("How do I delete my account?", "en", "f:q:act_delete+obj_account"),
    ],
)
def test_concept_frames_in_several_languages(
    concepts: Concepts, text: str, language: str, frame: str
) -> None:
    assert frame in _frames(concepts, text, language)


def test_a_negated_action_is_not_a_plain_request(concepts: Concepts) -> None:
    frames = _frames(concepts, "Please do not delete my account.", "en")
    assert "f:neg:act_delete+obj_account" in frames
    assert "f:do:act_delete+obj_account" not in frames


def test_a_model_learns_from_examples_and_names_its_evidence(concepts: Concepts) -> None:
    rows = []
    for i in range(12):
        rows.append(
            ({"f:do:act_delete+obj_account": 1.0, f"noise{i}": 1.0}, "x", frozenset({"deletion"}))
        )
        rows.append(
            ({"f:do:act_stop+obj_marketing": 1.0, f"noise{i}": 1.0}, "y", frozenset({"opt_out"}))
        )
    model = train(rows, ("deletion", "opt_out"), "key")
    p = model.probabilities({"f:do:act_delete+obj_account": 1.0}, "x")
    assert p["deletion"] > 0.7 > p["opt_out"]
    top = model.top_features({"f:do:act_delete+obj_account": 1.0}, "deletion")
    assert top and top[0][0] == "f:do:act_delete+obj_account"


def test_the_bank_reads_like_mail_and_machines_are_labelled(tmp_path: Path) -> None:
    (tmp_path / "en.jsonl").write_text(
        '{"id": "en-001", "lang": "en", "headers": {"From": "A <a@example.org>", "Subject": "Hi"},'
        ' "body": "Please delete my account.\\n\\nOn Mon, B wrote:\\n> stop the newsletter",'
        ' "intents": ["deletion"], "skip": false}\n'
        '{"id": "en-002", "lang": "en", "headers": {"From": "C <c@example.org>"},'
        ' "body": "I am out of the office until Monday.", "intents": [], "skip": true}\n',
        encoding="utf-8",
    )
    first, second = read_bank(tmp_path)
    assert first.labels == {"deletion"} and "newsletter" not in first.text  # quote set aside
    assert second.labels == {"machine"} and first.language == "en"


def test_the_inputs_key_follows_every_input_file(tmp_path: Path) -> None:
    files = []
    for name in ("a.toml", "b.jsonl"):
        path = tmp_path / name
        path.write_text("one")
        files.append(path)
    key = inputs_key(files, [])
    assert inputs_key(files, []) == key
    assert inputs_key(files, [("text", "deletion", "en")]) != key
    files[1].write_text("two")
    assert inputs_key(files, []) != key


def test_a_model_is_cached_and_reused_for_the_same_inputs(
    classifier: Classifier, concepts: Concepts, tmp_path: Path
) -> None:
    examples = [
        Example("Please delete my account.", "", frozenset({"deletion"})),
        Example("Stop the newsletter.", "", frozenset({"opt_out"})),
        Example("What cookies do you use?", "", frozenset({"question"})),
    ] * 4
    cache = tmp_path / "model.pickle"
    trained = classifier.learn(concepts, lambda: examples, "key-1", cache)
    assert cache.is_file() and trained.model is not None
    reused = classifier.learn(concepts, lambda: pytest.fail("must not be read"), "key-1", cache)
    assert reused.model is not None and reused.model.fingerprint == "key-1"
    retrained = classifier.learn(concepts, lambda: examples, "key-2", cache)
    assert retrained.model is not None and retrained.model.fingerprint == "key-2"
