"""headers: decoded header values, addresses, a missing From, a mended header block."""

from __future__ import annotations

import pytest

from privbot.mail.parse import parse_message


def test_headers_are_lowercase_decoded_and_keep_duplicates() -> None:
    raw = (
        b"Received: from a by b\nReceived: from c\n by d\nFrom: a@example.com\n"
        b"X-Note: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_ok?=\n\nbody\n"
    )
    msg = parse_message(raw)
    assert msg.headers["received"] == ("from a by b", "from c by d")
    assert msg.header("X-Note") == "café ok"


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
