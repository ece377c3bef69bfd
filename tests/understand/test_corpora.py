"""Quality thresholds on the shared real-world corpora and on our held-out labelled set."""

from __future__ import annotations

import pytest

from privbot.understand import Classifier
from privbot.understand.corpora import fill_letter
from privbot.understand.evaluate import evaluate

from .conftest import CORPORA, REPO

needs_corpora = pytest.mark.skipif(
    not CORPORA.is_dir(), reason=f"shared corpora not found at {CORPORA}"
)


@pytest.fixture(scope="module")
def report(shipped: Classifier):  # type: ignore[no-untyped-def]
    return evaluate(shipped, CORPORA, None, progress=False)


def test_fill_letter_strips_placeholders() -> None:
    text = (
        "Here is your sample letter.\n---\nTo {{ companyName }}:\n"
        "[runs>also {runs_list} ]Please {free text}erase my data.\n{% if x %}x{% endif %}\n"
        "{id_data}"
    )
    filled = fill_letter(text)
    assert "Here is your" not in filled
    assert "{" not in filled and "[" not in filled
    assert "JunoCloud.me" in filled and "Alex Example" in filled


@needs_corpora
def test_request_letters_at_least_97_percent(report) -> None:  # type: ignore[no-untyped-def]
    assert len(report.letters) >= 100
    assert report.letters_accuracy >= 0.97, report.format()


@needs_corpora
def test_privacyqa_at_least_95_percent_questions(report) -> None:  # type: ignore[no-untyped-def]
    assert len(report.privacyqa) > 1500
    assert report.privacyqa_accuracy >= 0.95


@needs_corpora
def test_spam_and_ham_trigger_no_action(report) -> None:  # type: ignore[no-untyped-def]
    """Nothing is acted on: no request read surely enough to apply or open a ticket (a
    low-confidence reading goes to staff). No ham is screened by its wording."""
    assert report.spam
    assert not [o.source for o in report.spam if o.detail == "acted"], report.format()
    ham_screened = [
        o.source for o in report.spam if o.expected[0] == "nice" and o.detail == "screened"
    ]
    assert not ham_screened
    # Screened (no reply at all): 6 of 28 with the learned layer deciding (7 with the bank
    # at 5,550 mails, 13 with the phrase lists alone). The rest go to staff at low
    # confidence: a request read into a mail full of spam words may be a person
    # complaining about our offers, and is never screened.
    assert sum(1 for o in report.spam if o.expected[0] == "spam" and o.detail) >= 6


def test_held_out_labelled_set(shipped: Classifier) -> None:
    rep = evaluate(shipped, None, REPO / "tests" / "data" / "labelled" / "test.tsv")
    (labelled,) = rep.labelled
    assert len(labelled.outcomes) >= 100
    assert labelled.macro_f1 >= 0.90, rep.format()
    assert "macro-F1" in rep.format()
