"""The learned layer's decision (`decide_learned`): what is read, how sure, what is held."""

from __future__ import annotations

from dataclasses import replace

from privbot.understand import Classifier
from privbot.understand.scoring import Classification, decide_learned
from privbot.understand.sentences import split_sentences

NAMES = ("opt_out", "data_access", "correction", "deletion", "question", "other", "machine")


def _decide(classifier: Classifier, text: str, **p_and_flags: object) -> Classification:
    flags = {
        k: p_and_flags.pop(k)
        for k in ("grounded", "machine_words", "spam", "passes_on")
        if k in p_and_flags
    }
    p = {name: 0.0 for name in NAMES} | {k: float(v) for k, v in p_and_flags.items()}  # type: ignore[arg-type]
    sentences = split_sentences(text, "")
    phrases = classifier._phrases(text, "", sentences)
    if flags.get("spam"):
        phrases = replace(phrases, spam=True)
    return decide_learned(
        classifier.intents,
        classifier.policy_index,
        phrases,
        sentences,
        p,
        {},
        None,
        bool(flags.get("grounded", True)),
        bool(flags.get("machine_words", True)),
        bool(flags.get("passes_on", False)),
    )


def test_confidence_is_the_least_sure_part_of_the_reading(classifier: Classifier) -> None:
    sure = _decide(classifier, "Delete my account.", deletion=0.99, opt_out=0.02)
    assert sure.intents == ("deletion",) and sure.confidence == 0.98 and not sure.low_confidence
    # A label left out at 0.2 makes the reading only 0.8 sure: staff look, nothing applied.
    doubt = _decide(classifier, "Delete my account.", deletion=0.99, opt_out=0.2)
    assert doubt.intents == ("deletion",) and doubt.confidence == 0.8 and doubt.low_confidence
    # "Other" left out weighs only from OTHER_DOUBT_P (a separate matter may be there).
    calm = _decide(classifier, "Delete my account.", deletion=0.99, other=0.15)
    assert calm.confidence == 0.99 and not calm.low_confidence
    other = _decide(classifier, "Delete my account. And my refund?", deletion=0.99, other=0.4)
    assert other.intents == ("deletion",) and other.low_confidence


def test_a_request_the_words_do_not_name_is_only_a_candidate(classifier: Classifier) -> None:
    unsure = _decide(classifier, "Frobnicate my records.", deletion=0.86, grounded=False)
    assert "deletion" not in unsure.intents and unsure.low_confidence
    sure = _decide(classifier, "plase remvoe me", opt_out=0.97, grounded=False)
    assert sure.intents == ("opt_out",) and sure.low_confidence  # read, never applied


def test_with_nothing_clear_the_likelier_of_question_and_other(classifier: Classifier) -> None:
    asked = _decide(classifier, "will this app spy on me", question=0.3, other=0.1)
    assert asked.intents == ("question",) and asked.low_confidence
    other = _decide(classifier, "hello there", question=0.1, other=0.3)
    assert other.intents == ("other",) and other.low_confidence


def test_spam_words_screen_only_a_mail_without_a_request(classifier: Classifier) -> None:
    bait = _decide(classifier, "FREE offer, click here, unsubscribe", other=0.9, spam=True)
    assert bait.spam
    person = _decide(classifier, "Your offers again! Stop it.", opt_out=0.99, spam=True)
    assert not person.spam and person.intents == ("opt_out",) and person.low_confidence
    asked = _decide(classifier, "Is a copy of my data free?", question=0.95, spam=True)
    assert not asked.spam and asked.intents == ("question",) and asked.low_confidence


def test_everyday_words_of_spam_do_not_screen_a_question(classifier: Classifier) -> None:
    """ "Gratis" or "kostenlos" alone was once decisive: a person asking whether a copy is
    free, or writing about the free plan, got no reply at all."""
    for subject, body in [
        ("Frage", "Ist die Kopie meiner Daten kostenlos? Oder kostet das etwas?"),
        ("Plano gratis", "Se eu mudar para o plano gratis, voces usam os meus dados?"),
        ("", "¿Es gratis pedir una copia de mis datos?"),
    ]:
        result = classifier.classify(body, subject)
        assert not result.spam and "question" in result.intents, body


def test_machine_wording_needs_a_machine_word_or_near_certainty(classifier: Classifier) -> None:
    assert _decide(classifier, "I am away until Monday.", machine=0.7).machine
    assert not _decide(
        classifier, "This is a text prefix.", machine=0.9, machine_words=False
    ).machine
    assert _decide(classifier, "Auto reply", machine=0.97, machine_words=False).machine
    # Forwarding a mail inline is what people do: only machine words of its own screen it.
    assert not _decide(
        classifier, "This is a text prefix.", machine=0.99, machine_words=False, passes_on=True
    ).machine
    assert _decide(classifier, "Auto reply", machine=0.7, passes_on=True).machine
    asks = _decide(classifier, "Away, but delete my account.", machine=0.9, deletion=0.9)
    assert not asks.machine and "deletion" in asks.intents  # a person who asks is not screened
