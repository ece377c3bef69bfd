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
        "Från: JunoCloud Service <s@junocloud-lagring.example.com>\nSkickat: den 11 mars 2025",
        "Od: Dorota <d@example.com>\nWysłano: czwartek, 13 lutego 2025 16:05",
        "Lähettäjä: Team <t@junocloud.me>\nLähetetty: maanantai 3. maaliskuuta 2025",
        "Από: Team <t@junocloud.me>\nΣτάλθηκε: Δευτέρα, 3 Μαρτίου 2025",
        "Feladó: Team <t@junocloud.me>\nElküldve: 2025. március 3.",
        "-------- Původní zpráva --------",
        "-----Wiadomość oryginalna-----",
        "---------- Videresendt meddelelse ----------",
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


# HTML replies: the parser reads the HTML alternative, so quotes must be found there too.
_HTML_REPLIES = {
    "gmail": (
        '<div dir="ltr">Yes, please delete it.<div><br></div><div>Jane</div></div><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 27 May 2024 at 11:00,'
        " Privacy Team &lt;<a href='mailto:support@junocloud.me'>support@junocloud.me</a>&gt;"
        ' wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
        'border-left:1px solid rgb(204,204,204);padding-left:1ex"><div>Shall we delete your'
        " data?<br>Team</div></blockquote></div>",
        "Yes, please delete it.\n\nJane",
        "",
    ),
    "gmail signature, German attribution": (
        '<div dir="ltr"><div>Please delete my account.</div><br clear="all"><div><div dir="ltr"'
        ' class="gmail_signature" data-smartmail="gmail_signature">Jane Doe<br>Acme Ltd</div>'
        '</div></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">Am Mo., 27.'
        " Mai 2024 um 11:00 Uhr schrieb Team &lt;t@junocloud.me&gt;:<br></div><blockquote"
        ' class="gmail_quote"><div>Shall we delete your data?</div></blockquote></div>',
        "Please delete my account.",
        "--\nJane Doe\nAcme Ltd",
    ),
    "Outlook desktop": (
        "<html><head><style>p.MsoNormal{margin:0cm}</style></head><body lang=EN-GB><div"
        " class=WordSection1><p class=MsoNormal>Please delete my account.<o:p></o:p></p><p"
        " class=MsoNormal><o:p>&nbsp;</o:p></p><p class=MsoNormal>Jane<o:p></o:p></p><div><div"
        " style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'><p"
        " class=MsoNormal><b><span lang=EN-US>From:</span></b><span lang=EN-US> Privacy Team"
        " &lt;support@junocloud.me&gt; <br><b>Sent:</b> Monday, May 27, 2024 11:00 AM<br>"
        "<b>To:</b> Jane<br><b>Subject:</b> Your request<o:p></o:p></span></p></div></div><p"
        " class=MsoNormal>Shall we delete your data?<o:p></o:p></p></div></body></html>",
        "Please delete my account.\n\nJane",
        "",
    ),
    "Outlook on the web, Polish headers": (
        "<div><div>Please delete it.</div><div>&nbsp;</div><div>Jane</div></div><div"
        ' id="appendonsend"></div><hr style="display:inline-block;width:98%"><div'
        ' id="divRplyFwdMsg" dir="ltr"><font face="Calibri"><b>Od:</b> Privacy Team'
        " &lt;support@junocloud.me&gt;<br><b>Wysłane:</b> poniedziałek, 27 maja 2024 11:00<br>"
        "<b>Do:</b> Jane<br><b>Temat:</b> Your request</font><div>&nbsp;</div></div><div><div>"
        "Shall we delete your data?</div></div>",
        "Please delete it.\n\nJane",
        "",
    ),
    "Apple Mail on iOS": (
        '<html><body dir="auto">Yes delete it.<br><br><div dir="ltr">Sent from my iPhone</div>'
        '<div dir="ltr"><br><blockquote type="cite">On 27 May 2024, at 11:00, Privacy Team'
        " &lt;support@junocloud.me&gt; wrote:<br><br></blockquote></div><blockquote"
        ' type="cite"><div dir="ltr">Shall we delete your data?</div></blockquote></body></html>',
        "Yes delete it.",
        "Sent from my iPhone",
    ),
    "Thunderbird, Czech attribution": (
        '<html><body><p>Yes, go ahead.</p><div class="moz-signature">-- <br>Jane</div><div'
        ' class="moz-cite-prefix">Dne 27.05.24 v 11:00 Team napsal(a):<br></div><blockquote'
        ' type="cite" cite="mid:x@y">Shall we delete your data?</blockquote></body></html>',
        "Yes, go ahead.",
        "--\nJane",
    ),
    "Yahoo": (
        '<div class="ydp1b2c3yahoo-style-wrap"><div>Delete please</div><div><br></div><div'
        ' id="ydp123yahoo_quoted_456" class="ydp123yahoo_quoted"><div><div>Il lunedì 27 maggio'
        " 2024, 11:00:00 CEST, Team &lt;t@junocloud.me&gt; ha scritto:</div><div><br></div>"
        '<div><div dir="ltr">Shall we delete your data?</div></div></div></div></div>',
        "Delete please",
        "",
    ),
}


@pytest.mark.parametrize("client", list(_HTML_REPLIES))
def test_html_reply_is_split(client: str) -> None:
    html, new, signature = _HTML_REPLIES[client]
    raw = (
        "From: jane@example.com\nSubject: Re: Your request\nMIME-Version: 1.0\n"
        "Content-Type: multipart/alternative; boundary=b\n\n"
        "--b\nContent-Type: text/plain; charset=utf-8\n\n(plain alternative)\n"
        f"--b\nContent-Type: text/html; charset=utf-8\n\n{html}\n--b--\n"
    ).encode()
    msg = parse_message(raw)
    assert msg.new_text == new
    assert msg.signature == signature
    assert "Shall we delete your data?" in msg.quoted_text
    assert "Shall we delete" not in msg.new_text
