"""parse_message: errors, whole messages, MIME structure, transfer encodings, limits."""

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
    parse_message,
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


# --- whole messages -------------------------------------------------------------------------------


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
    assert msg.text == "HTML VERSION: Here is my ID document as requested."  # the richer part
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


# --- transfer encodings and line endings ----------------------------------------------------------


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


def _alternative(*parts: tuple[str, str], outer: str = "multipart/alternative") -> bytes:
    body = "".join(
        f"--b\nContent-Type: {ctype}; charset=utf-8\n\n{text}\n" for ctype, text in parts
    )
    return f"From: a@example.com\nContent-Type: {outer}; boundary=b\n\n{body}--b--\n".encode()


def test_alternative_prefers_the_html_part() -> None:
    raw = _alternative(
        ("text/plain", "Please delete\nmy account."),
        ("text/html", "<p>Please delete my account.</p><p>Jane</p>"),
    )
    assert parse_message(raw).text == "Please delete my account.\n\nJane"


@pytest.mark.parametrize(
    "html",
    ["", "<html><head><title>Newsletter</title></head><body><img src='cid:x'></body></html>"],
)
def test_alternative_falls_back_to_plain_when_html_has_no_text(html: str) -> None:
    raw = _alternative(("text/plain", "Please delete my account."), ("text/html", html))
    assert parse_message(raw).text == "Please delete my account."


def test_alternative_takes_the_last_readable_part() -> None:
    # RFC 2046: alternatives run from plainest to richest, whatever their types.
    raw = _alternative(("text/html", "<p>first</p>"), ("text/plain", "last"))
    assert parse_message(raw).text == "last"


def test_alternative_html_inside_related_is_read_and_images_listed() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: multipart/alternative; boundary=a\n\n"
        b"--a\nContent-Type: text/plain\n\nplain words\n"
        b"--a\nContent-Type: multipart/related; boundary=r\n\n"
        b"--r\nContent-Type: text/html\n\n<p>html words</p>\n"
        b"--r\nContent-Type: image/png\nContent-ID: <i1>\n\nxx\n--r--\n--a--\n"
    )
    msg = parse_message(raw)
    assert msg.text == "html words"
    assert [a.content_type for a in msg.attachments] == ["image/png"]


def test_related_reads_only_its_root() -> None:
    raw = (
        b'From: a@example.com\nContent-Type: multipart/related; boundary=r; start="<root>"\n\n'
        b"--r\nContent-Type: text/html\nContent-ID: <frame>\n\n<p>a resource</p>\n"
        b"--r\nContent-Type: text/html\nContent-ID: <root>\n\n<p>the body</p>\n--r--\n"
    )
    assert parse_message(raw).text == "the body"


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
