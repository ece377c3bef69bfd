"""Composing replies: `as_bytes` must give exactly what the stdlib generator gives."""

from __future__ import annotations

import email
import email.policy
import random

import pytest

from privbot.mail.compose import as_bytes, compose_reply, is_reply, strip_prefixes
from privbot.tickets import reply_subject

WORDS = ["Grüße", "hello", "données", "ŽŠČ", "x" * 40, "我的数据", "a", "Re:", "[JC-3]",
         "long-word-with-hyphens", "émoji🙂", "y" * 90, "\t", "AW: Fwd:"]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_as_bytes_is_the_stdlib_serialisation(seed: int) -> None:
    rng = random.Random(seed)
    for i in range(500):
        subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 15)))
        refs = tuple(f"id{j}.{'y' * rng.randint(1, 120)}@ex.org" for j in range(rng.randint(0, 14)))
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 200))) + "\n"
        reply = compose_reply(
            from_addr="support@junocloud.me",
            to_addr="person@example.org",
            subject=reply_subject(subject, i),
            body=body,
            domain="junocloud.me",
            in_reply_to="m@example.org" if refs or i % 2 else None,
            references=refs,
        )
        assert as_bytes(reply.message) == reply.message.as_bytes()


def test_long_headers_are_folded_and_read_back_whole() -> None:
    refs = tuple(f"ref{j}.{'z' * 50}@example.org" for j in range(12))
    subject = reply_subject("Auskunft über meine gespeicherten Daten nach Art. 15 DSGVO", 7)
    reply = compose_reply(
        from_addr="support@junocloud.me", to_addr="max@example.de", subject=subject,
        body="Guten Tag,\n\nIhre Anfrage ist angekommen.\n", domain="junocloud.me",
        in_reply_to="last@example.de", references=refs,
    )  # fmt: skip
    raw = as_bytes(reply.message)
    assert max(len(line) for line in raw.split(b"\n")) <= 78
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert back["Subject"] == subject
    assert back["References"].split()[-1] == "<last@example.de>"
    assert back.get_content() == "Guten Tag,\n\nIhre Anfrage ist angekommen.\n"


def test_a_non_ascii_address_goes_through_the_stdlib() -> None:
    reply = compose_reply(
        from_addr="support@junocloud.me", to_addr="jörg@exämple.de", subject="Re: x [JC-1]",
        body="Hallo\n", domain="junocloud.me",
    )  # fmt: skip
    assert as_bytes(reply.message) == reply.message.as_bytes()


def test_no_header_line_reaches_998_characters_whatever_came_in() -> None:
    # RFC 5322 2.1.1: a strict relay refuses a longer line with 500. Folding happens only
    # at spaces, so an unbroken subject must be encoded, and an id that cannot fit is left out.
    subject = "Re: " + "ü" * 700 + "x" * 1500 + " [JC-1]"
    long_id = "y" * 1200 + "@example.org"
    fits = "z" * 980 + "@example.org"  # alone on a folded line: " <id>" is 995 characters
    for subject_now in (subject, subject.replace("ü", "u")):
        reply = compose_reply(
            from_addr="support@junocloud.me", to_addr="max@example.de", subject=subject_now,
            body="Hallo\n", domain="junocloud.me", in_reply_to=long_id,
            references=("first@example.org", long_id, fits),
        )  # fmt: skip
        raw = as_bytes(reply.message)
        assert raw == reply.message.as_bytes()
        assert max(len(line) for line in raw.split(b"\n")) <= 998
        back = email.message_from_bytes(raw, policy=email.policy.default)
        assert back["Subject"] == subject_now
        assert "In-Reply-To" not in back  # an id no line can carry: not ours to shorten
        assert back["References"].split() == ["<first@example.org>", f"<{fits}>"]


@pytest.mark.parametrize(
    ("subject", "bare", "reply"),
    [
        ("Re: AW: Fwd: Löschung", "Löschung", True),
        ("Odp: VS[2]: Usunięcie konta", "Usunięcie konta", True),
        ("ΑΠ: Διαγραφή", "Διαγραφή", True),
        ("Vá: törlés", "törlés", True),
        ("WG: Re: Kündigung", "Kündigung", False),  # a forward of a reply: sent again
        ("Doorst: afmelden", "afmelden", False),
        ("Reminder: delete my data", "Reminder: delete my data", False),
    ],
)
def test_reply_and_forward_prefixes_in_the_users_languages(
    subject: str, bare: str, reply: bool
) -> None:
    assert strip_prefixes(subject) == bare
    assert is_reply(subject) is reply
