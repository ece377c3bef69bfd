"""Classifier behaviour: one-liners, negation, multi-intent, questions, addresses."""

from __future__ import annotations

import random
import unicodedata

import pytest

from privbot.understand import Classifier, Intents
from privbot.understand.language import normalise
from privbot.understand.policy import Policy, Topics

ONE_LINERS = [
    ("unsubscribe", "opt_out", "en"),
    ("Please delete my account and all my data.", "deletion", "en"),
    ("I would like a copy of all personal data you hold about me.", "data_access", "en"),
    ("Newsletter abbestellen, bitte.", "opt_out", "de"),
    ("Bitte löschen Sie mein Konto.", "deletion", "de"),
    ("Je souhaite me désabonner de la newsletter.", "opt_out", "fr"),
    ("Merci de supprimer mon compte.", "deletion", "fr"),
    ("Por favor, denme de baja de la newsletter.", "opt_out", "es"),
    ("Solicito una copia de mis datos personales.", "data_access", "es"),
    ("Vi chiedo di cancellare il mio account.", "deletion", "it"),
    ("Ik wil me afmelden voor de nieuwsbrief.", "opt_out", "nl"),
    ("Gostaria de receber uma cópia dos meus dados pessoais.", "data_access", "pt"),
]


@pytest.mark.parametrize(("text", "intent", "language"), ONE_LINERS)
def test_one_liners(classifier: Classifier, text: str, intent: str, language: str) -> None:
    result = classifier.classify(text)
    assert result.intents == (intent,)
    assert result.language == language
    assert not result.spam


@pytest.mark.parametrize(
    "text",
    [
        "Do NOT unsubscribe me, I love the newsletter.",
        "Bitte NICHT abmelden!",
        "Ne me désabonnez pas s'il vous plaît.",
        "Por favor no me den de baja.",
        "Schrijf me alsjeblieft niet uit.",
    ],
)
def test_negation_does_not_trigger(classifier: Classifier, text: str) -> None:
    result = classifier.classify(text)
    assert "opt_out" not in result.intents
    assert any(m.negated for m in result.matches)


def test_own_negation_phrase_is_a_request(classifier: Classifier) -> None:
    assert classifier.classify("I don't want your emails anymore").intents == ("opt_out",)
    assert classifier.classify("Bitte keine Werbung mehr.").intents == ("opt_out",)


def test_multi_intent_ordered(classifier: Classifier) -> None:
    result = classifier.classify("Please unsubscribe me and delete my account.")
    assert result.intents == ("deletion", "opt_out")
    both = classifier.classify("Send me a copy of my data and delete my account afterwards.")
    assert set(both.intents) == {"data_access", "deletion"}


def test_request_plus_question(classifier: Classifier) -> None:
    text = (
        "Please remove me from all marketing lists.\n\n"
        "Also, could you tell me whether my email address was ever given to other companies?"
    )
    result = classifier.classify(text)
    assert result.intents == ("opt_out", "question")
    assert result.citations


@pytest.mark.parametrize(
    "text",
    [
        "How do I opt out of cookies?",
        "Is there a fee for a copy of my data?",
        "How can I delete my account?",
        "Wie kann ich mein Konto löschen?",
        "Comment puis-je me désabonner ?",
        "does this app sell my data",
    ],
)
def test_asking_about_a_right_is_a_question(classifier: Classifier, text: str) -> None:
    result = classifier.classify(text)
    assert result.intents == ("question",)


def test_polite_request_shaped_as_question_is_a_request(classifier: Classifier) -> None:
    assert classifier.classify("Could you please delete my account?").intents == ("deletion",)


def test_question_cites_policy(classifier: Classifier) -> None:
    result = classifier.classify("How do I opt out of cookies?")
    assert result.sections[0] == "Cookies"
    assert result.citations[0].heading == "Cookies"
    assert not result.unanswered_question


def test_unanswerable_question_is_flagged(classifier: Classifier) -> None:
    result = classifier.classify("What is the capital of Peru?")
    assert result.unanswered_question
    assert result.low_confidence


def test_request_cites_its_sections(classifier: Classifier) -> None:
    result = classifier.classify("Please send me a copy of my personal data.")
    assert result.sections == ("Your rights",)
    assert all(c.heading == "Your rights" for c in result.citations)


def test_named_addresses(classifier: Classifier) -> None:
    result = classifier.classify(
        "Please remove Anna.K@Example.org from your newsletter. Reply to support@junocloud.me."
    )
    assert result.intents == ("opt_out",)
    assert result.named_addresses == ("anna.k@example.org",)


@pytest.mark.parametrize(
    ("text", "scopes"),
    [
        ("Unsubscribe me from the newsletter.", ("marketing_email",)),
        (
            "Please do not pass my details on to third parties for marketing.",
            ("third_party_marketing",),
        ),
        ("Please stop showing me targeted ads.", ("targeted_ads",)),
        (
            "Stop everything: no more emails, no targeted ads.",
            ("marketing_email", "third_party_marketing", "targeted_ads"),
        ),
    ],
)
def test_opt_out_scopes(classifier: Classifier, text: str, scopes: tuple[str, ...]) -> None:
    result = classifier.classify(text)
    assert result.intents[0] == "opt_out"
    assert result.opt_out_scopes == scopes


def test_correction_text_quotes_the_change(classifier: Classifier) -> None:
    text = (
        "Hello,\n\nmy address has changed. The new one is 12 Park Lane, London. "
        "Please update your records.\n\nThanks, Jo"
    )
    result = classifier.classify(text)
    assert result.intents == ("correction",)
    assert result.correction_text is not None
    assert "12 Park Lane" in result.correction_text
    assert "Thanks" not in result.correction_text


def test_subject_counts(classifier: Classifier) -> None:
    assert classifier.classify("", subject="Unsubscribe").intents == ("opt_out",)
    assert classifier.classify("Thanks!", subject="Re: Newsletter").intents == ("other",)


def test_list_footer_is_not_an_opt_out(classifier: Classifier) -> None:
    text = (
        "Wine release 20020904 is out with many fixes.\n\n"
        "To unsubscribe from this list, visit http://lists.example.org/listinfo"
    )
    assert "opt_out" not in classifier.classify(text).intents


def test_billing_and_spam_are_other(classifier: Classifier) -> None:
    bill = classifier.classify("I was charged twice, my invoice is wrong.")
    assert bill.intents == ("other",) and not bill.spam
    spam = classifier.classify(
        "CONGRATULATIONS! You have won a lottery prize of 1,000,000 dollars. "
        "Click here: http://win.example.com to claim. Act now, limited time!"
    )
    assert spam.intents == ("other",) and spam.spam


def test_low_confidence_when_evidence_is_thin(classifier: Classifier) -> None:
    thin = classifier.classify("newsletter")
    assert thin.intents == ("other",) and thin.low_confidence
    assert any(name == "opt_out" for name, _ in thin.candidates)
    clear = classifier.classify("Please delete my account and erase all my personal data.")
    assert not clear.low_confidence and clear.confidence > 0.7


def test_matches_explain_the_decision(classifier: Classifier) -> None:
    result = classifier.classify("Please delete my account.")
    assert any(m.intent == "deletion" and m.weight > 0 for m in result.matches)


def test_extra_examples_at_runtime(intents: Intents, policy: Policy, topics: Topics) -> None:
    text = "Kick me out of the club mailings"
    assert Classifier.build(intents, policy, topics).classify(text).intents == ("other",)
    long_example = (
        "I am fed up with all the promotional stuff landing in my inbox every single morning"
    )
    taught = Classifier.build(
        intents,
        policy,
        topics,
        extra_examples=[
            ("kick me out of the club mailings", "opt_out", "en"),
            (long_example, "opt_out", "en"),
        ],
    )
    assert taught.classify(text).intents == ("opt_out",)
    assert taught.classify(long_example.replace("every", "each")).intents[0] == "opt_out"


def test_unknown_language_defaults_to_english(classifier: Classifier) -> None:
    assert classifier.classify("1234 5678").language == "en"
    assert classifier.classify("请删除我的个人数据").intents == ("deletion",)


def test_normalise_strips_every_combining_mark_like_the_plain_definition() -> None:
    """`normalise` takes shortcuts (ASCII, distinct characters); it must equal the rule."""

    def plain(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

    rng = random.Random(5)
    samples = ["Löschung", "LÖSCHUNG ẞ ǅ ﬁ", "Ελληνικά", "日本語", "Ｆｕｌｌ", "a\u0301\u0302b", ""]
    samples += ["".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(30)) for _ in range(3000)]
    assert [normalise(s) for s in samples] == [plain(s) for s in samples]
    assert normalise("Löschung") == "loschung"
