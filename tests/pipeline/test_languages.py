"""Replies in the writer's language, end to end: a mail in each language goes in through
the SMTP receiver, through the whole pipeline and out through the outbox to a real relay.

The mails and the key sentences a native reader expects are data, one file per language
(tests/data/replies/<lang>.toml, written natively). The policy is quoted in English, word
for word, and the due date is written the language's way.
"""

from __future__ import annotations

import smtplib
import tomllib
from collections.abc import Iterator
from email.message import Message as EmailMessage
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select

from privbot.app import App, data_folder
from privbot.models import Ticket
from privbot.pipeline.reply import answer_text
from privbot.replies import long_date
from privbot.serve import Service
from privbot.understand.policy import load_policy
from testing.apps import mail, make_app
from testing.servers import CaptureRelay, free_port

DATA = Path(__file__).parent.parent / "data" / "replies"
LANGUAGES = sorted(p.stem for p in DATA.glob("*.toml"))
POLICY = load_policy(data_folder("replies") / "policy.md")
KINDS = ("access", "question")
# What the English templates say, which no reader of another language may be sent.
ENGLISH = ("Thank you for your message", "Your reference is", "Kind regards",
           "A member of our privacy team", "this is what our privacy policy says")  # fmt: skip


def _expected(language: str) -> dict:
    return tomllib.loads((DATA / f"{language}.toml").read_text(encoding="utf-8"))


def _flat(text: str) -> str:
    """The text with quote marks and line breaks gone: what a sentence check reads."""
    return " ".join(" ".join(line.removeprefix(">").strip() for line in text.splitlines()).split())


def _body(message: EmailMessage) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


def _section_texts(heading: str) -> list[str]:
    section = POLICY.section(heading)
    return [" ".join(t.split()) for t in (*section.paragraphs, *(c.text for c in section.clauses))]


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, dict]]:
    """Every language's mails, delivered over SMTP at once; the replies as the relay got
    them, by (language, kind)."""
    db = tmp_path_factory.mktemp("languages") / "privbot.db"
    relay = CaptureRelay()
    relay.start()
    port = free_port()
    app = make_app(f"sqlite:///{db}", listen=f"127.0.0.1:{port}", smtp_url=relay.url,
                   reply_cap_per_domain="1000")  # fmt: skip
    service = Service(app).start()
    senders = {}
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for language in LANGUAGES:
                for kind in KINDS:
                    case = _expected(language)[kind]
                    sender = f"{kind}-{language}@example.org"
                    senders[sender] = (language, kind)
                    raw = mail(sender=sender, subject=case["subject"], body=case["body"],
                               message_id=f"{kind}-{language}@example.org")  # fmt: skip
                    smtp.sendmail(sender, ["support@junocloud.me"], raw)
        replies = relay.wait_for(len(senders), timeout=120)
        by_case = {senders[parseaddr(r["To"])[1]]: r for r in replies}
        yield app, by_case
    finally:
        service.stop()
        app.close()
        relay.stop()


def test_every_language_has_its_mails() -> None:
    assert len(LANGUAGES) == 15 and "en" in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_request_for_a_copy_is_answered_in_its_language(
    answered: tuple[App, dict], language: str
) -> None:
    app, by_case = answered
    reply = by_case[(language, "access")]
    assert reply["Content-Language"] == language
    text = _flat(_body(reply))
    for sentence in _expected(language)["access"]["expect"]:
        assert " ".join(sentence.split()) in text, (language, sentence)
    # The conditions of a copy (the fee, the evidence of identity): the policy's own words.
    for clause in _section_texts("Your rights"):
        assert clause in text, (language, clause)
    assert "Your rights" in text
    with app.sessions() as s:
        sender = f"access-{language}@example.org"
        ticket = s.scalars(select(Ticket).where(Ticket.requester == sender)).one()
        assert ticket.language == language
        assert "data_access" in ticket.intents
        assert _flat(long_date(ticket.due_at, language)) in text  # the language's way
    if language != "en":
        assert not [s for s in ENGLISH if s in text], language


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_question_is_answered_in_its_language_with_the_right_clause(
    answered: tuple[App, dict], language: str
) -> None:
    _, by_case = answered
    reply = by_case[(language, "question")]
    assert reply["Content-Language"] == language
    body = _body(reply)
    text = _flat(body)
    for sentence in _expected(language)["question"]["expect"]:
        assert " ".join(sentence.split()) in text, (language, sentence)
    assert "Cookies" in text
    quoted = [c for c in _section_texts("Cookies") if c in text]
    assert quoted, language  # at least one of the Cookies clauses, verbatim
    assert all(text.count(c) == 1 for c in quoted)  # no clause quoted twice
    if language != "en":
        assert not [s for s in ENGLISH if s in text], language


@pytest.mark.parametrize("language", LANGUAGES)
def test_privbot_ask_answers_in_the_questions_language(
    answered: tuple[App, dict], language: str
) -> None:
    app, _ = answered
    case = _expected(language)["question"]
    answer = answer_text(app, f"{case['subject']}\n{case['body']}")
    assert answer.understanding.language == language
    assert "Cookies" in answer.sections
    text = _flat(answer.body)
    if language != "en":
        # Said in the language: the policy is only in English, so it is quoted in English.
        assert _flat(app.replies.says("_cite.txt.j2", language, "note")) in text
        assert "This is what our privacy policy says" not in text
