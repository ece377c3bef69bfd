"""The learned layer: concepts matched after stemming in every language, a model trained
from examples kept as data, cached by a fingerprint of its inputs, explained by features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privbot.mail.parse import parse_message
from privbot.understand import Classifier
from privbot.understand.concepts import Concepts, load_concepts
from privbot.understand.intents import IntentsError
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


@pytest.mark.parametrize(
    ("text", "language", "concepts_found"),
    [
        ("Kontolöschung bitte.", "de", {"c:act_delete", "c:obj_account"}),
        ("Antrag auf Datenlöschung", "de", {"c:act_delete", "c:obj_data"}),
        ("Newsletterabmeldung", "de", {"c:act_stop", "c:obj_marketing"}),
        ("Accountverwijdering graag.", "nl", {"c:act_delete", "c:obj_account"}),
        ("Kontoradering tack", "sv", {"c:act_delete", "c:obj_account"}),
        ("Kontosletning", "da", {"c:act_delete", "c:obj_account"}),
        # A prefix entry matches the word's start ("fiok*"); the head is read as well.
        ("Kérem a fióktörlést.", "hu", {"c:act_delete", "c:obj_account"}),
        ("Tilinpoisto kiitos", "fi", {"c:act_delete", "c:obj_account"}),
    ],
)
def test_a_compound_is_read_by_its_parts(
    concepts: Concepts, text: str, language: str, concepts_found: set[str]
) -> None:
    found = {k for k in _frames(concepts, text, language) if k.startswith("c:")}
    assert concepts_found <= found, found


def test_a_compound_whose_head_is_no_entry_names_nothing(concepts: Concepts) -> None:
    # "Datenschutzerklärung" (privacy notice): "daten" alone must not make it about data.
    assert not _frames(concepts, "Datenschutzerklärung", "de")


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


def test_a_typo_reads_as_the_entry_one_edit_away(concepts: Concepts) -> None:
    assert "c:act_stop" in _frames(concepts, "pls unsubcribe me", "en")
    assert "c:act_delete" in _frames(concepts, "please delet my acount", "en")
    # Short words are left alone: "list" is not "lost", "fist" or "last".
    assert "c:act_delete" not in _frames(concepts, "I lost it", "en")


def test_a_polite_question_is_its_own_mood(concepts: Concepts) -> None:
    polite = _frames(concepts, "Could you stop sending me the newsletter?", "en")
    asked = _frames(concepts, "How do I stop the newsletter?", "en")
    assert "f:pq:act_stop+obj_marketing" in polite
    assert "f:q:act_stop+obj_marketing" in asked and "f:pq:act_stop+obj_marketing" not in asked


SECTION_BANK = [
    ("What cookies do you set on my browser?", ["Cookies"]),
    ("Do you use cookies for tracking?", ["Cookies"]),
    ("Which cookies does the site store?", ["Cookies"]),
    ("How long do you keep my data after I close the account?", ["none"]),
    ("How many years do you retain my records?", ["none"]),
    ("What is the retention period for my data?", ["none"]),
]


def _bank(tmp_path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    lines = [
        json.dumps(
            {
                "id": f"en-{i:03d}",
                "lang": "en",
                "headers": {"From": f"P{i} <p{i}@example.org>", "Subject": "question"},
                "body": text,
                "intents": ["question"],
                "skip": False,
                "sections": sections,
            }
        )
        for i, (text, sections) in enumerate(rows * 3)
    ]
    (tmp_path / "en.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_the_section_model_picks_sections_or_says_the_policy_is_silent(
    classifier: Classifier, concepts: Concepts, tmp_path: Path
) -> None:
    examples = read_bank(_bank(tmp_path, SECTION_BANK))
    assert {s for e in examples for s in e.sections} == {"Cookies", "none"}
    trained = classifier.learn(concepts, lambda: examples, "sections", None)
    assert trained.sections_model is not None
    cookies = trained.classify("Tell me which cookies you store, please?")
    assert "question" in cookies.intents and cookies.sections == ("Cookies",)
    assert cookies.citations and all(c.heading == "Cookies" for c in cookies.citations)
    silent = trained.classify("How long will you retain my data?")
    assert "question" in silent.intents and silent.unanswered_question and not silent.citations


def test_a_section_that_is_no_heading_of_the_policy_stops_start_up(
    classifier: Classifier, concepts: Concepts, tmp_path: Path
) -> None:
    examples = read_bank(_bank(tmp_path, [("What cookies?", ["Biscuits"])]))
    with pytest.raises(IntentsError, match="Biscuits"):
        classifier.learn(concepts, lambda: examples, "bad-sections", None)


@pytest.mark.parametrize(
    ("subject", "body", "language", "thread"),
    [
        ("Re: Cerere ștergere cont", "Mulțumesc, totul e în regulă acum!", "ro", True),
        ("SV: Afmelding af nyhedsbrev", "Tak, det virker.", "da", True),
        ("AW: [12] Löschung meines Kontos", "Danke!", "de", True),
        ("ΑΠ: Διαγραφή λογαριασμού", "Ευχαριστώ!", "el", True),
        ("Fwd: Delete my account", "Still nothing. Please do it now.", "en", False),
        ("WG: Löschung meines Kontos", "Bitte endlich erledigen.", "de", False),
        ("Re: Delete my account", "", "en", False),  # the subject is all the sender wrote
        ("Delete my account", "Thanks.", "en", False),
    ],
)
def test_a_replys_subject_is_the_threads_not_a_new_request(
    concepts: Concepts, subject: str, body: str, language: str, thread: bool
) -> None:
    sentences = split_sentences(body, subject)
    assert sentences[0].is_subject and sentences[0].thread is thread
    assert not sentences[0].text.lower().startswith(("re:", "sv:", "aw:", "fwd:", "wg:"))
    features = concept_features(concepts, sentences[:1], language)
    # Its frames are the thread's, never the plain frames a request now makes.
    assert features, "the subject names an action"
    assert all(k.startswith("thread:") for k in features) is thread, features
    assert any(k.startswith(("f:", "subj:")) for k in features) is not thread, features


@pytest.mark.parametrize(
    ("subject", "body", "asked"),
    [
        # A thank-you under the subject of the request we answered asks for nothing.
        ("Re: Please delete my account", "Thank you, all done, everything is fine now.", ()),
        ("SV: Afmelding af nyhedsbrev", "Tak, det virker. Der er ikke kommet flere.", ()),
        # A forward's subject is the sender's own request, sent again.
        (
            "Fwd: Please delete my account",
            "Please delete my account and all my data.",
            ("deletion",),
        ),
    ],
)
def test_the_shipped_model_reads_a_replys_subject_as_context(
    shipped: Classifier, subject: str, body: str, asked: tuple[str, ...]
) -> None:
    reading = shipped.classify(body, subject)
    requests = tuple(i for i in reading.intents if i in shipped.intents.requests)
    assert requests == asked, (reading.intents, reading.probabilities)


def test_a_forwards_frames_are_features_of_their_own(
    concepts: Concepts, shipped: Classifier
) -> None:
    forwarded = (
        "From: Ann <ann@example.org>\nSubject: Delete my account\n\nPlease delete my account."
    )
    phrases = shipped._phrases(
        "Sending this again.", "", split_sentences("Sending this again.", "")
    )
    features = shipped._features(
        phrases, split_sentences("Sending this again.", ""), "Sending this again.", concepts,
        forwarded,
    )  # fmt: skip
    assert "fw:f:do:act_delete+obj_account" in features
    assert "f:do:act_delete+obj_account" not in features


FORWARDED_PHISH = """\
Hi, this came this morning. It says it is you but the sender is not your domain, so I
guess it is phishing. Thought you would want to know. I have not clicked anything.

Bo

Från: JunoCloud Service <service@junocloud-storage.example.com>
Skickat: den 3 mars 2025 06:48
Till: bo@example.net
Ämne: Your storage is full - verify your account

Dear customer, your storage is full and your files will be deleted within 24 hours.
Verify your account and payment details here to keep them: http://example.com/verify
"""

FORWARDED_OWN = """\
Zweiter Versuch, ich habe bis heute keine Antwort bekommen.

---------- Weitergeleitete Nachricht ----------
Von: Jana Beck <jana@example.org>
Datum: Mo., 3. März 2025 um 09:12
Betreff: Konto löschen
An: support@junocloud.me

Hallo, bitte löschen Sie mein Konto und alle meine Daten. Jana Beck
"""


@pytest.mark.parametrize(
    ("subject", "body", "asked"),
    [
        # Phishing shown to us: its "verify your account" and "deleted" are not the sender's.
        ("Fwd: Your storage is full - verify your account", FORWARDED_PHISH, ()),
        # The sender's own unanswered request, forwarded: it is asked again.
        ("WG: Konto löschen", FORWARDED_OWN, ("deletion",)),
    ],
)
def test_the_shipped_model_reads_what_a_forward_passes_on(
    shipped: Classifier, subject: str, body: str, asked: tuple[str, ...]
) -> None:
    raw = f"From: x@example.org\nTo: support@junocloud.me\nSubject: {subject}\n\n{body}"
    parsed = parse_message(raw.encode())
    assert parsed.forwarded_text and "Fwd" not in parsed.new_text
    reading = shipped.classify(parsed.new_text, parsed.subject, parsed.forwarded_text)
    assert not reading.machine and not reading.spam, reading.probabilities
    requests = tuple(i for i in reading.intents if i in shipped.intents.requests)
    assert requests == asked, (reading.intents, reading.probabilities)
