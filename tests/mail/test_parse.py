"""parse_message: MIME structure, charsets, headers, reply splitting, limits."""

from __future__ import annotations

import base64
import contextlib
import statistics
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privbot.mail.parse import (
    MAX_PARTS,
    MAX_TEXT_CHARS,
    ParseError,
    html_to_text,
    parse_message,
    split_reply,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture(name: str) -> bytes:
    return (FIXTURES / "parse" / name).read_bytes()


def _plain(body: bytes, headers: bytes = b"", charset: bytes | None = b"utf-8") -> bytes:
    ctype = b"Content-Type: text/plain" + (b"; charset=" + charset if charset else b"") + b"\n"
    return b"From: a@example.com\nSubject: s\n" + headers + ctype + b"\n" + body


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"   \r\n\n\t "])
def test_empty_input_raises_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(raw)


def test_non_bytes_raises_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_message("From: a@example.com\n\nhi")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_anything_but_parse_error(raw: bytes) -> None:
    try:
        msg = parse_message(raw)
    except ParseError:
        return
    assert "\x00" not in msg.text and "\r" not in msg.text


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"From: =?utf-8?B?broken <x@y>\n",
                b"Subject: =?x-unknown?Q?=E4=?=\n",
                b'To: "unterminated <a@b.com>, , ;\n',
                b'Content-Type: multipart/mixed; boundary="b"\n',
                b'Content-Type: text/plain; charset="7bit"\n',
                b"Content-Transfer-Encoding: base64\n",
                b"Content-Transfer-Encoding: quoted-printable\n",
                b"\n",
                b"--b\n",
                b"--b--\n",
                b"Content-Type: message/rfc822\n",
                b"SGVsbG8gd29ybGQ\n",
                b"=E4=F6=\n",
                b"\xff\xfe\x00\x81\r",
                b"<p>hi<br>there</p>\n",
            ]
        ),
        max_size=40,
    )
)
def test_mime_shaped_junk_never_raises_anything_but_parse_error(chunks: list[bytes]) -> None:
    with contextlib.suppress(ParseError):
        parse_message(b"".join(chunks))


# --- headers and addresses ----------------------------------------------------------------------


def test_html_only_fixture() -> None:
    msg = parse_message(_fixture("html_only.eml"))
    assert msg.from_addr == "ana.garcia@example.es"
    assert msg.from_name == "Ana García"
    assert msg.subject == "Solicitud de eliminación"
    assert msg.message_id == "abc.123@example.es"
    assert msg.content_type == "text/html"
    assert "quiero que borréis mis datos & mi cuenta.\nGracias" in msg.text
    assert "- cuenta: ana\n- correo: ana.garcia@example.es" in msg.text
    assert "Ana García" in msg.text
    for dropped in ("ignored title", "alert", "color: red", "<"):
        assert dropped not in msg.text


def test_alternative_with_attachments_fixture() -> None:
    msg = parse_message(_fixture("alternative_attachment.eml"))
    assert msg.text == "Here is my ID document as requested."
    assert msg.to == ("support@junocloud.me", "privacy@junocloud.me")
    assert msg.cc == ("legal@example.com",)
    assert msg.reply_to == "jane.private@example.org"
    assert msg.in_reply_to == "privbot.aa11@junocloud.me"
    assert msg.references == ("m0@example.com", "privbot.aa11@junocloud.me")
    pdf_size = len(base64.b64decode("JVBERi0xLjQKJcOkw7zDtsOfCg=="))
    names = {(a.filename, a.content_type, a.size) for a in msg.attachments}
    assert ("id.pdf", "application/pdf", pdf_size) in names
    assert any(
        a.filename == "notes.txt" and a.content_type == "text/plain" for a in msg.attachments
    )
    assert "attached text file" not in msg.text


def test_headers_are_lowercase_decoded_and_keep_duplicates() -> None:
    raw = (
        b"Received: from a by b\nReceived: from c\n by d\nFrom: a@example.com\n"
        b"X-Note: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_ok?=\n\nbody\n"
    )
    msg = parse_message(raw)
    assert msg.headers["received"] == ("from a by b", "from c by d")
    assert msg.header("X-Note") == "café ok"


def test_encoded_words_split_inside_a_utf8_character() -> None:
    word = "Grüße".encode()
    first, second = base64.b64encode(word[:3]).decode(), base64.b64encode(word[3:]).decode()
    raw = f"From: a@example.com\nSubject: =?UTF-8?B?{first}?=\n =?UTF-8?B?{second}?=\n\nx".encode()
    assert parse_message(raw).subject == "Grüße"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (b"=?utf-8?B?SGVsbG8?=", "Hello"),  # missing padding
        (b"=?x-foo?Q?abc?=", "abc"),  # unknown charset
        (b"=?utf-8?Q?broken", "=?utf-8?Q?broken"),  # unterminated word stays literal
        (b"Caf\xe9 ol\xe9", "Café olé"),  # raw latin-1 bytes
        (b"Caf\xc3\xa9", "Café"),  # raw utf-8 bytes
    ],
)
def test_broken_subjects_are_repaired(subject: bytes, expected: str) -> None:
    msg = parse_message(b"From: a@example.com\nSubject: " + subject + b"\n\nbody\n")
    assert msg.subject == expected


@pytest.mark.parametrize(
    ("from_header", "addr", "name"),
    [
        (b"Jane Doe <Jane.Doe@Example.COM>", "jane.doe@example.com", "Jane Doe"),
        (b'"Doe, Jane" <jd@example.com>', "jd@example.com", "Doe, Jane"),
        (b"=?utf-8?q?J=C3=BCrgen?= <j@example.de>", "j@example.de", "Jürgen"),
        (b'"unterminated <a@b.com>', "a@b.com", ""),
        (b"x@[1.2.3", None, ""),
        (b"<>", None, ""),
        (b"MAILER-DAEMON", "mailer-daemon", ""),
    ],
)
def test_from_addresses(from_header: bytes, addr: str | None, name: str) -> None:
    msg = parse_message(b"From: " + from_header + b"\nSubject: s\n\nbody\n")
    assert msg.from_addr == addr
    assert msg.from_name == name


def test_missing_from_is_none_with_a_defect_note() -> None:
    msg = parse_message(b"To: support@junocloud.me\nSubject: s\n\nhello\n")
    assert msg.from_addr is None
    assert "no From header" in msg.defects


def test_broken_header_folding_is_mended() -> None:
    raw = (
        b"From: a@example.com\nX-Long: part one\npart two lost its indent\nSubject: kept\n\nbody\n"
    )
    msg = parse_message(raw)
    assert msg.subject == "kept"
    assert msg.text == "body"


# --- charsets and encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        (b"iso-8859-1", "Grüße".encode("latin-1"), "Grüße"),
        (b"iso-gb2312", "你好世界".encode("gb2312"), "你好世界"),
        (b"gb2312", "你好".encode("gbk"), "你好"),
        (b"unicode-1-1-utf-7", "Übermittlung".encode("utf-7"), "Übermittlung"),
        (b"7bit", "naïve".encode(), "naïve"),
        (b'"x-foo"', "naïve".encode("latin-1"), "naïve"),
        (None, "Grüße".encode("latin-1"), "Grüße"),
        (None, "Grüße".encode(), "Grüße"),
        (b"us-ascii", "Grüße".encode(), "Grüße"),
        (b"iso-2022-jp", "日本語".encode("iso2022_jp"), "日本語"),
        (b"windows-1252", "“quoted” €".encode("cp1252"), "“quoted” €"),
        (b"utf-8", "mixed ü ".encode() + "ü".encode("latin-1"), "mixed ü ü"),
    ],
)
def test_charsets(charset: bytes | None, body: bytes, expected: str) -> None:
    msg = parse_message(_plain(body, charset=charset))
    assert msg.text == expected


def test_unknown_charset_is_noted() -> None:
    msg = parse_message(_plain(b"hello", charset=b"x-foo"))
    assert msg.text == "hello"
    assert any("unknown charset 'x-foo'" in d for d in msg.defects)


def test_iso_2022_jp_with_microsoft_extensions() -> None:
    body = b"\x1b$B-!#1ET\x1b(B"  # "①１都" in CP50220, which Python's codecs reject
    msg = parse_message(_plain(body, charset=b"ISO-2022-JP"))
    assert msg.text == "①１都"


@pytest.mark.parametrize(
    ("cte", "payload"),
    [
        (b"base64", b"SGVsbG8sIHdvcmxkIQ"),  # broken padding
        (b"base64", b"SGVsbG8s\nIHdvcmxkIQ==\n"),
        (b"quoted-printable", b"Hello,=20wor=\nld!"),
    ],
)
def test_transfer_encodings(cte: bytes, payload: bytes) -> None:
    msg = parse_message(_plain(payload, headers=b"Content-Transfer-Encoding: " + cte + b"\n"))
    assert msg.text == "Hello, world!"


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    raw = b"From: a@example.com\nSubject: line endings\n\nfirst\nsecond\n".replace(b"\n", newline)
    msg = parse_message(raw)
    assert msg.subject == "line endings"
    assert msg.text == "first\nsecond"


def test_nul_characters_are_removed() -> None:
    assert parse_message(_plain(b"a\x00b")).text == "ab"


# --- MIME structure -----------------------------------------------------------------------------


def test_multipart_report_uses_only_the_human_part() -> None:
    raw = (FIXTURES / "screen" / "bounce_multipart_report.eml").read_bytes()
    msg = parse_message(raw)
    assert msg.content_type == "multipart/report"
    assert "could not\nbe delivered" in msg.text
    assert "Reporting-MTA" not in msg.text
    assert "your account has been deleted" not in msg.text
    types = [a.content_type for a in msg.attachments]
    assert types == ["message/delivery-status", "message/rfc822"]


def test_inline_forwarded_message_text_is_kept_and_marked_as_quote() -> None:
    raw = (
        b"From: a@example.com\nSubject: Fwd: x\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nSee below.\n"
        b"--b\nContent-Type: message/rfc822\n\n"
        b"From: c@example.com\nSubject: orig\n\nOriginal words.\n"
        b"--b--\n"
    )
    msg = parse_message(raw)
    assert "Original words." in msg.text
    assert msg.new_text == "See below."
    assert "Original words." in msg.quoted_text


def test_attached_message_is_an_attachment() -> None:
    raw = (
        b"From: a@example.com\nSubject: x\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nSee attached.\n"
        b"--b\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename=o.eml\n\n"
        b"From: c@example.com\n\nOriginal words.\n--b--\n"
    )
    msg = parse_message(raw)
    assert msg.text == "See attached."
    assert [(a.filename, a.content_type) for a in msg.attachments] == [("o.eml", "message/rfc822")]


def test_inline_text_parts_are_concatenated() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nPart one.\n"
        b"--b\nContent-Type: image/png\n\nxx\n"
        b"--b\nContent-Type: text/plain\n\nPart two.\n--b--\n"
    )
    msg = parse_message(raw)
    assert "Part one." in msg.text and "Part two." in msg.text
    assert [a.content_type for a in msg.attachments] == ["image/png"]


def test_text_is_capped() -> None:
    msg = parse_message(_plain(b"x" * (MAX_TEXT_CHARS + 500_000)))
    assert len(msg.text) == MAX_TEXT_CHARS
    assert any("truncated" in d for d in msg.defects)


def test_part_count_is_capped() -> None:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\np\n" for _ in range(MAX_PARTS + 200))
    raw = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n" + parts + b"--b--\n"
    msg = parse_message(raw)
    assert any("MIME parts" in d for d in msg.defects)
    assert msg.text.count("p") < MAX_PARTS


def test_typical_mail_parses_fast() -> None:
    raw = (FIXTURES / "parse" / "alternative_attachment.eml").read_bytes()
    parse_message(raw)
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        parse_message(raw)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.005


# --- html ---------------------------------------------------------------------------------------


def test_html_to_text_blocks_and_quotes() -> None:
    html = (
        "<div>Hi&nbsp;there,</div><p>first<br/>second</p><blockquote><p>quoted</p></blockquote>"
        "<table><tr><td>a</td><td>b</td></tr></table><p></p><p></p><p>end &lt;3</p>"
    )
    assert html_to_text(html) == "Hi there,\n\nfirst\nsecond\n\n> quoted\n\na b\n\nend <3"


def test_html_to_text_survives_unclosed_head() -> None:
    assert html_to_text("<html><head><title>t</title><body>visible</body>") == "visible"


# --- new text / quote / signature ---------------------------------------------------------------


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
