"""Screening: every machine rule fires on its own fixture; people get through."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbot.mail.parse import parse_message
from privbot.mail.parsed import ParsedMessage
from privbot.mail.screen import RULES, ScreenContext, screen

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "screen"
OURS = frozenset({"support@junocloud.me"})


def _load(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes())


def _ctx(msg: ParsedMessage | None = None, envelope: str | None = None) -> ScreenContext:
    sender = envelope if envelope is not None or msg is None else msg.header("return-path")
    return ScreenContext(
        our_addresses=OURS, our_message_id_domain="junocloud.me", envelope_sender=sender
    )


def _mail(headers: str = "", subject: str = "Hi", body: str = "Hello.") -> ParsedMessage:
    base = f"From: Jane Doe <jane@example.com>\nTo: support@junocloud.me\nSubject: {subject}\n"
    return parse_message((base + headers + f"\n{body}\n").encode())


@pytest.mark.parametrize(
    ("fixture", "rule", "reason_start"),
    [
        (
            "bounce_multipart_report.eml",
            "bounce_report",
            "bounce: multipart/report delivery-status",
        ),
        ("bounce_null_return_path.eml", "null_sender", "bounce: "),
        ("bounce_mailer_daemon.eml", "mailer_daemon", "bounce: From mailer-daemon@"),
        ("bounce_subject.eml", "bounce_subject", "bounce: subject 'Undeliverable:"),
        ("feedback_arf.eml", "feedback_report", "feedback report: multipart/report"),
        ("feedback_jmrp.eml", "feedback_report", "feedback report: subject"),
        (
            "autoreply_auto_submitted.eml",
            "auto_submitted",
            "auto-reply: Auto-Submitted: auto-replied",
        ),
        ("autoreply_x_autoreply.eml", "autoreply_headers", "auto-reply: x-autoreply"),
        ("autoreply_exchange_suppress.eml", "autoreply_headers", "auto-reply: X-Auto-Response"),
        ("autoreply_precedence_bulk.eml", "bulk_precedence", "bulk mail: Precedence: bulk"),
        (
            "autoreply_subject_de.eml",
            "auto_reply_subject",
            "auto-reply: subject 'Abwesenheitsnotiz",
        ),
        ("challenge_boxbe.eml", "challenge_response", "challenge-response: x-boxbe-request"),
        ("list_newsletter.eml", "mailing_list", "mailing list: list-id"),
        ("own_from.eml", "own_mail", "own mail: From is our address support@junocloud.me"),
        ("own_xloop.eml", "own_mail", "own mail: X-Loop"),
        ("own_message_id.eml", "own_mail", "own mail: Message-ID privbot."),
        ("noreply_sender.eml", "noreply_sender", "no-reply sender: no-reply@shop.example"),
    ],
)
def test_machine_fixture_is_screened_by_its_rule(
    fixture: str, rule: str, reason_start: str
) -> None:
    msg = _load(fixture)
    ctx = _ctx(msg)
    rule_fn = next(r for r in RULES if r.__name__ == rule)
    assert (rule_fn(msg, ctx) or "").startswith(reason_start)
    assert screen(msg, ctx) is not None


@pytest.mark.parametrize(
    "fixture",
    [
        "human_plain.eml",
        "human_reply_to_us.eml",
        "human_xmailer.eml",
        "human_german.eml",
        "human_unsubscribe_body.eml",
    ],
)
def test_people_pass(fixture: str) -> None:
    msg = _load(fixture)
    assert screen(msg, _ctx(msg)) is None


def test_no_rule_fires_on_any_human_fixture() -> None:
    # Stricter than screen(): a rule later in the order must not fire either.
    for path in sorted(FIXTURES.glob("human_*.eml")):
        msg = _load(path.name)
        fired = [r.__name__ for r in RULES if r(msg, _ctx(msg))]
        assert fired == [], path.name


def test_null_envelope_sender_from_context() -> None:
    msg = _load("human_plain.eml")
    assert screen(msg, _ctx(msg, envelope="")) == "bounce: null envelope sender <>"
    assert screen(msg, _ctx(msg, envelope="<>")) == "bounce: null envelope sender <>"
    assert screen(msg, _ctx(msg, envelope="jane.doe@example.com")) is None


def test_missing_from_is_not_screened() -> None:
    msg = parse_message(b"To: support@junocloud.me\nSubject: hello\n\nplease delete me\n")
    assert msg.from_addr is None
    assert screen(msg, _ctx(msg)) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Undeliverable: Re: hello",
        "failure notice",
        "Returned mail: see transcript for details",
    ],
)
def test_bounce_subjects(subject: str) -> None:
    assert screen(_mail(subject=subject), _ctx()) is not None


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Re: my data",
        "Automatic reply: Re: my data",
        "AUTO: John Smith is out of the office (returning 05/06/2024)",
        "Autoreply: my data",
        "Auto-Reply: my data",
        "Abwesenheitsnotiz: Auskunft",
        "Automatische Antwort: Auskunft",
        "Réponse automatique : demande",
        "Absence du bureau",
        "Respuesta automática: solicitud",
        "Fuera de la oficina",
        "Risposta automatica: richiesta",
        "Afwezigheidsmelding",
        "Automatisch antwoord: verzoek",
        "Resposta automática: pedido",
        "Ausente: pedido",
        "[Automatyczna odpowiedź] test",
    ],
)
def test_auto_reply_subjects(subject: str) -> None:
    reason = screen(_mail(subject=subject), _ctx())
    assert reason is not None and reason.startswith("auto-reply: subject")


@pytest.mark.parametrize(
    "subject",
    [
        "Absence of a reply to my GDPR request",
        "Question about automatic replies in your product",
        "My delivery address changed",
        "Re: Please delete my account",
        "Auskunft nach Art. 15 DSGVO",
        "Why was my mail undelivered last week?",
    ],
)
def test_human_subjects_pass(subject: str) -> None:
    assert screen(_mail(subject=subject), _ctx()) is None


@pytest.mark.parametrize(
    ("header", "screened"),
    [
        ("Auto-Submitted: auto-generated", True),
        ("Auto-Submitted: auto-replied (vacation)", True),
        ("Auto-Submitted: No", False),
        ("X-Autorespond: yes", True),
        ("X-Autoresponder: vacation", True),
        ("Precedence: junk", True),
        ("Precedence: list", True),
        ("Precedence: auto_reply", True),
        ("Precedence: normal", False),
        ("Precedence: first-class", False),
        ("Mailing-List: contact privacy-help@lists.example", True),
        ("X-Mailman-Version: 2.1.39", True),
        ("List-Post: <mailto:privacy@lists.example>", True),
        ("X-Bluebottle-Request: <1234>", True),
        ("X-MS-Exchange-Inbox-Rules-Loop: a@example.com", True),
        ("Sender: support@junocloud.me", True),
        ("Sender: assistant@example.com", False),
        ("Message-ID: <privbot.abc@otherdomain.example>", False),
        ("In-Reply-To: <privbot.abc@junocloud.me>", False),
    ],
)
def test_single_headers(header: str, screened: bool) -> None:
    assert (screen(_mail(header + "\n"), _ctx()) is not None) is screened


@pytest.mark.parametrize(
    ("sender", "screened"),
    [
        ("noreply@bank.example", True),
        ("no_reply@bank.example", True),
        ("calendar-noreply@google.example", True),
        ("do-not-reply@shop.example", True),
        ("donotreply@shop.example", True),
        ("bounces+123-abc=junocloud.me@em.example", True),
        ("notifications@github.example", True),
        ("postmaster@example.org", True),
        ("post_master@vtext.example", True),
        ("norbert@example.com", False),
        ("replyguy@example.com", False),
        ("noreen.reply@example.com", False),
        ("bouncer.fan@example.com", False),
        ("info@example.com", False),
        ("support@example.com", False),
    ],
)
def test_sender_local_parts(sender: str, screened: bool) -> None:
    msg = parse_message(f"From: {sender}\nTo: support@junocloud.me\nSubject: Hi\n\nHi\n".encode())
    assert (screen(msg, _ctx()) is not None) is screened


def test_rules_are_named_functions_in_order() -> None:
    names = [r.__name__ for r in RULES]
    assert names[0] == "own_mail"
    assert len(set(names)) == len(names)
    assert {"bounce_report", "feedback_report", "auto_submitted", "mailing_list"} <= set(names)


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "Read: Your data request",
            "Your message\n\n  To: Ann\n  Subject: Your data request\n"
            "  Sent: Monday, 3 March 2025 10:15\n\nwas read on Monday, 3 March 2025 10:47.",
        ),
        (
            "Leído: Re: Su solicitud",
            "Su mensaje\n\n  Para: Luis\n  Asunto: Re: Su solicitud\n"
            "  Enviado: miércoles, 21 de mayo de 2025\n\nfue leído el miércoles.",
        ),
        (
            "Αναγνωσμένο: Ενημέρωση",
            "Το μήνυμά σας\n\n  Προς: a@example.net\n  Θέμα: Ενημέρωση\n"
            "  Εστάλη: Πέμπτη\n\nαναγνώστηκε την Πέμπτη.",
        ),
    ],
)
def test_read_receipts_without_headers_are_screened(subject: str, body: str) -> None:
    assert (screen(_mail(subject=subject, body=body), _ctx()) or "").startswith("read receipt")


def test_a_person_whose_subject_says_read_passes() -> None:
    msg = _mail(subject="Read: chapter 3 of your policy", body="Please delete my account.")
    assert screen(msg, _ctx()) is None
