"""The reply templates in every language: complete, rendering for every combination of
intents, quoting the policy verbatim in English, with dates written for the language."""

from __future__ import annotations

import itertools
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from privbot.app import data_folder
from privbot.replies import REFERENCE, RepliesError, load_replies, long_date
from privbot.understand.intents import load_intents
from privbot.understand.policy import Citation, load_policy

LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "cs", "ro", "el", "hu",
             "fi")  # fmt: skip
INTENTS = load_intents(data_folder("intents"))
REPLIES = load_replies(data_folder("replies"), INTENTS.names)
POLICY = load_policy(data_folder("replies") / "policy.md")
DUE = datetime(2027, 1, 2, 9, 30)
SCOPES = ("marketing_email", "third_party_marketing", "targeted_ads")
# Sentences of the English templates that must never reach a reader of another language.
ENGLISH = ("Thank you for your message", "Your reference is", "Kind regards",
           "A member of our privacy team", "Stopping marketing", "Your question")  # fmt: skip


def _cites(heading: str) -> tuple[Citation, ...]:
    section = POLICY.section(heading)
    texts = [Citation(heading, p) for p in section.paragraphs[:1]]
    return tuple(texts + [Citation(heading, c.text, c.letter) for c in section.clauses[:2]])


CITED = _cites("Your rights") + _cites("Cookies")


def _part(name: str, *, answered: bool = True, scopes: tuple[str, ...] = SCOPES) -> dict:
    quotes = name in INTENTS.names and bool(INTENTS.get(name).policy_sections)
    part = {"intent": name, "template": f"intents/{name}.txt.j2",
            "citations": CITED if quotes else (),
            "scopes": scopes, "held_back": (), "change": "new address: 1 Main St"}  # fmt: skip
    if name == "question":
        part["answered"] = answered
        part["citations"] = CITED if answered else ()
    if name == "evidence_received":
        part["files"] = ("dni.pdf", "selfie.jpg")
    return part


def _answer(language: str, parts: list[dict], **context: object) -> str:
    return REPLIES.render(
        "answer.txt.j2",
        language,
        **{
            "name": "Ana Pérez", "subject": "my data", "ticket_id": 42,
            "address": "support@junocloud.me", "requester": "ana@example.org",
            "joined": False, "needs_staff": True, "due_date": DUE, "parts": parts,
            "verified": True, "quotes_policy": any(p["citations"] for p in parts),
            **context,
        },
    )  # fmt: skip


def test_every_language_the_classifier_knows_has_its_replies() -> None:
    assert set(LANGUAGES) <= set(REPLIES.languages)
    assert REPLIES.language("de") == "de"
    assert REPLIES.language("ja") == REFERENCE  # unknown: English
    assert REPLIES.language(None) == REFERENCE


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_combination_of_intents_renders_and_quotes_the_policy_verbatim(
    language: str,
) -> None:
    names = list(INTENTS.names)
    due = " ".join(long_date(DUE, language).split())  # no-break spaces, as any space
    for size in (1, 2, 3):
        for combo in itertools.combinations(names, size):
            for answered, joined, verified in itertools.product((True, False), repeat=3):
                parts = [_part(n, answered=answered) for n in combo]
                text = _answer(language, parts, joined=joined, verified=verified)
                assert "JC-42" in text
                flat = " ".join(line.removeprefix(">").strip() for line in text.splitlines())
                for cite in (c for p in parts for c in p["citations"]):
                    assert " ".join(cite.text.split()) in flat, (language, combo)
                    assert cite.heading in text
                if not joined:
                    assert due in " ".join(text.split()), (language, combo)
                if language != "en":
                    assert not [s for s in ENGLISH if s in text], (language, combo)


UNVERIFIED = {"intent": "unverified", "template": "intents/unverified.txt.j2", "citations": ()}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_special_parts_render(language: str) -> None:
    special = [
        [{"intent": "review", "template": "intents/review.txt.j2", "citations": ()}],
        [UNVERIFIED],
        [_part("opt_out"), {**UNVERIFIED, "rest": True}],
        [_part("evidence_received")],
        [_part("opt_out", scopes=())],  # an opt-out for another address: staff check it
    ]
    for parts in special:
        text = _answer(language, parts, joined=parts[0]["intent"] == "evidence_received")
        assert "JC-42" in text
        if any(p["intent"] == "unverified" for p in parts):
            assert "ana@example.org" in text  # whose sending we could not confirm
    evidence = _answer(language, [_part("evidence_received")], joined=True)
    due = " ".join(long_date(DUE, language).split())
    assert "dni.pdf" in evidence and due in " ".join(evidence.split())


@pytest.mark.parametrize("language", LANGUAGES)
def test_staff_templates_chat_and_ask_render(language: str) -> None:
    context = {"name": "", "ticket_id": 7, "subject": "Auskunft", "address": "support@junocloud.me",
               "requester": "ana@example.org", "due_date": DUE, "staff": "eva@junocloud.me",
               "reason": "many archives"}  # fmt: skip
    for name in REPLIES.names("staff"):
        text = REPLIES.render(f"staff/{name}.txt.j2", language, **context)
        assert "JC-7" in text
    extension = REPLIES.render("staff/extension.txt.j2", language, **context)
    assert " ".join(long_date(DUE, language).split()) in " ".join(extension.split())
    requests = sorted(INTENTS.requests)
    confirm = REPLIES.render(
        "chat/confirm.txt.j2", language, intents=requests, link="https://x.example/c/abc",
        hours=24, address="support@junocloud.me",
    )  # fmt: skip
    assert "https://x.example/c/abc" in confirm.splitlines()  # on a line of its own
    for macro, kw in [
        ("confirm_subject", {}),
        ("address_needed", {"intents": requests}),
        ("link_sent", {"address": "ana@example.org", "hours": 24}),
        ("links_used_up", {"count": 3, "address": "support@junocloud.me"}),
        ("links_busy", {"address": "support@junocloud.me"}),
    ]:
        said = REPLIES.says("chat/says.txt.j2", language, macro, **kw)
        assert said and "\n" not in said
    parts = [_part("question"), _part("deletion"), _part("question", answered=False)]
    ask = REPLIES.render("ask.txt.j2", language, parts=parts, address="support@junocloud.me",
                         quotes_policy=True)  # fmt: skip
    assert CITED[0].heading in ask
    if language != "en":
        english = REPLIES.render("ask.txt.j2", "en", parts=parts,
                                 address="support@junocloud.me", quotes_policy=True)  # fmt: skip
        assert english.splitlines()[0] not in ask


def test_dates_are_written_for_the_language() -> None:
    nbsp = "\u00a0"  # a date is never broken across lines
    assert long_date(DUE, "en") == f"January{nbsp}2,{nbsp}2027"
    assert long_date(DUE, "de") == f"2.{nbsp}Januar{nbsp}2027"
    assert long_date(DUE, "fr") == f"2{nbsp}janvier{nbsp}2027"
    assert long_date(None, "de") == ""


def test_a_language_missing_a_template_stops_start_up_naming_it(tmp_path: Path) -> None:
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "fi" / "staff" / "extension.txt.j2").unlink()
    with pytest.raises(RepliesError) as caught:
        load_replies(replies, INTENTS.names)
    assert "fi/staff/extension.txt.j2" in str(caught.value)


def test_a_broken_template_stops_start_up_naming_it(tmp_path: Path) -> None:
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "de" / "layout.txt.j2").write_text("{% if name %}Hallo\n")
    with pytest.raises(RepliesError) as caught:
        load_replies(replies, INTENTS.names)
    assert "de/layout.txt.j2" in str(caught.value)


def test_a_folder_that_is_no_language_stops_start_up(tmp_path: Path) -> None:
    replies = tmp_path / "replies"
    shutil.copytree(data_folder("replies"), replies)
    (replies / "deutsch").mkdir()
    with pytest.raises(RepliesError, match="not a language code"):
        load_replies(replies, INTENTS.names)
