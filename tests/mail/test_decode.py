"""decode: charsets (declared, unknown, mislabelled) and RFC 2047 encoded words."""

from __future__ import annotations

import base64

import pytest

from privbot.mail.parse import parse_message


def _plain(body: bytes, headers: bytes = b"", charset: bytes | None = b"utf-8") -> bytes:
    ctype = b"Content-Type: text/plain" + (b"; charset=" + charset if charset else b"") + b"\n"
    return b"From: a@example.com\nSubject: s\n" + headers + ctype + b"\n" + body


# --- charsets -------------------------------------------------------------------------------------


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


# --- encoded words in headers ---------------------------------------------------------------------


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
