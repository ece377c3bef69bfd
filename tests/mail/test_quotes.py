"""split_reply: new text, quoted text and signature."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbot.mail.parse import parse_message
from privbot.mail.quotes import split_reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture(name: str) -> bytes:
    return (FIXTURES / "parse" / name).read_bytes()


@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, 27 May 2024 at 11:00, Privacy Team <support@junocloud.me> wrote:",
        "Am 27.05.2024 um 11:00 schrieb Privacy Team <support@junocloud.me>:",
        "Le lun. 27 mai 2024 à 11:00, Privacy Team <support@junocloud.me> a écrit :",
        "El lun, 27 may 2024 a las 11:00, Privacy Team (<support@junocloud.me>) escribió:",
        "Il giorno lun 27 mag 2024 alle ore 11:00 Privacy Team <support@junocloud.me> ha scritto:",
        "Op ma 27 mei 2024 om 11:00 schreef Privacy Team <support@junocloud.me>:",
        "Em seg., 27 de mai. de 2024 às 11:00, Privacy Team <support@junocloud.me> escreveu:",
        "On Mon, 27 May 2024 at 11:00, Privacy Team\n<support@junocloud.me> wrote:",
    ],
)
def test_top_posted_reply_is_split(attribution: str) -> None:
    text = f"Yes, please go ahead.\n\n{attribution}\n> Shall we delete your data?\n> Team"
    new, quoted, signature = split_reply(text)
    assert new == "Yes, please go ahead."
    assert quoted.startswith(attribution.split("\n")[0])
    assert "Shall we delete" in quoted
    assert signature == ""


def test_attribution_without_quote_marks_cuts_everything_below() -> None:
    text = "Fine.\n\nOn Mon, 27 May 2024, Team <t@junocloud.me> wrote:\n\nShall we delete it?"
    assert split_reply(text)[:2] == (
        "Fine.",
        "On Mon, 27 May 2024, Team <t@junocloud.me> wrote:\n\nShall we delete it?",
    )


def test_bottom_posting_keeps_every_unquoted_line() -> None:
    text = (
        "On Mon, Team <t@junocloud.me> wrote:\n> Which account?\nThe one with jane@example.com.\n"
        "> And since when?\nSince 2019.\n\n-- \nJane"
    )
    new, quoted, signature = split_reply(text)
    assert new == "The one with jane@example.com.\nSince 2019."
    assert quoted == "On Mon, Team <t@junocloud.me> wrote:\n> Which account?\n> And since when?"
    assert signature == "-- \nJane"


def test_outlook_reply_fixture() -> None:
    msg = parse_message(_fixture("outlook_reply.eml"))
    assert msg.new_text == (
        "Bonjour,\n\nMerci, mais je veux aussi l'arrêt de la prospection.\n\nCordialement,\nPierre"
    )
    assert msg.signature == "Envoyé de mon iPhone"
    assert msg.quoted_text.startswith("________________________________\nDe : JunoCloud")


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----",
        "----- Ursprüngliche Nachricht -----",
        "---------- Forwarded message ---------",
        "From: Team <t@junocloud.me>\nSent: Monday, May 27, 2024 11:00 AM",
        "Von: Team <t@junocloud.me>\nGesendet: Montag, 27. Mai 2024 11:00",
    ],
)
def test_outlook_style_headers_start_the_quote(separator: str) -> None:
    new, quoted, _ = split_reply(f"Please hurry.\n\n{separator}\nTo: me\n\nOld text")
    assert new == "Please hurry."
    assert quoted.endswith("Old text")


@pytest.mark.parametrize(
    "footer", ["Sent from my iPhone", "Von meinem iPhone gesendet", "Envoyé de mon iPhone"]
)
def test_mobile_footers_are_signatures(footer: str) -> None:
    assert split_reply(f"Delete it please.\n\n{footer}") == ("Delete it please.", "", footer)


def test_all_quoted_text_is_kept_as_new_text() -> None:
    text = "> Shall we delete your data?\n> Team"
    assert split_reply(text) == (text, "", "")


def test_person_mentioning_from_is_not_a_quote() -> None:
    text = "From: my old address jane@example.com\nI want it deleted."
    assert split_reply(text) == (text, "", "")
