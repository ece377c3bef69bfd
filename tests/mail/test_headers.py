"""headers: decoded header values, addresses, a missing From, a mended header block."""

from __future__ import annotations

import base64
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest

from privbot.mail.headers import message_id_of, parse_message_id, parse_references
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
        # One quoted string to the end of the line: no address, for the stdlib and for us.
        (b'"unterminated <a@b.com>', None, ""),
        (b"x@[1.2.3", None, ""),
        (b"<>", None, ""),
        (b"MAILER-DAEMON", "mailer-daemon", ""),
    ],
)
def test_from_addresses(from_header: bytes, addr: str | None, name: str) -> None:
    msg = parse_message(b"From: " + from_header + b"\nSubject: s\n\nbody\n")
    assert msg.from_addr == addr
    assert msg.from_name == name


# Where privbot's old From parser and the stdlib disagreed. From is now read the standard
# way (email.headerregistry, checked against email.utils): an address built by decoding an
# encoded word, or a mailbox only one stdlib parser sees, is never answered.
@pytest.mark.parametrize(
    ("from_header", "addr", "note"),
    [
        # An encoded word that decodes to address-like text is a name, never an address.
        (b"=?utf-8?q?junk=40attacker.example?=", None, "no usable address in From"),
        (b"=?utf-8?b?YXR0YWNrZXJAZXZpbC5leGFtcGxl?=", None, "no usable address in From"),
        (b"=?utf-8?q?a=40b=2Ec?=@evil.example", None, "From is ambiguous"),
        (b"=?utf-8?q?victim=40example.org?= <=?utf-8?q?x?=@evil.example>", None, "ambiguous"),
        (b"=?utf-8?q?x?= junk@attacker.example <victim@example.org>", None, "ambiguous"),
        # Two mailboxes, read as one by the registry and as two by email.utils.
        (b"victim@example.org <attacker@evil.example>", None, "From is ambiguous"),
        (b"<alice@example.org> <bob@evil.example>", None, "From is ambiguous"),
        (b"Alice <alice@example.org>bob@evil.example", None, "From is ambiguous"),
        # A comment where the old parser took the first address it saw.
        (b"victim@example.org (comment) <attacker@evil.example>", None, "From is ambiguous"),
        # Quoted local parts are the address's, at the real domain.
        (b'"evil@attacker.example"@example.org', '"evil@attacker.example"@example.org', None),
        (b'"a b"@example.org', '"a b"@example.org', None),
    ],
)
def test_tricky_from_is_read_the_stdlib_way(
    from_header: bytes, addr: str | None, note: str | None
) -> None:
    msg = parse_message(b"From: " + from_header + b"\nSubject: s\n\nbody\n")
    assert msg.from_addr == addr
    if note is not None:
        assert any(note in d for d in msg.defects), msg.defects


@pytest.mark.parametrize(
    ("from_header", "addr", "every"),
    [
        # Where both stdlib parsers agree, the result is theirs, comments and all.
        (b"Alice <alice@example.org>, Bob <bob@evil.example>", "alice@example.org",
         ("alice@example.org", "bob@evil.example")),
        (b"attacker@evil.example (victim@example.org)", "attacker@evil.example", None),
        (b'"victim@example.org" <attacker@evil.example>', "attacker@evil.example", None),
        (b"Jane <jane(victim@example.org)@evil.example>", "jane@evil.example", None),
        (b"=?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>", "smith@example.com", None),
    ],
)  # fmt: skip
def test_from_where_the_stdlib_parsers_agree(
    from_header: bytes, addr: str, every: tuple[str, ...] | None
) -> None:
    msg = parse_message(b"From: " + from_header + b"\nSubject: s\n\nbody\n")
    assert msg.from_addr == addr
    assert msg.from_all == (every or (addr,))


def test_two_from_fields_are_no_from() -> None:
    """RFC 5322 allows one: which one another verifier read cannot be known."""
    raw = b"From: [junk]\nFrom: Ann <ann@example.org>\nSubject: s\n\nbody\n"
    msg = parse_message(raw)
    assert msg.from_addr is None and "2 From fields" in msg.defects


def test_a_mislabelled_encoded_name_is_read_in_the_message_charset() -> None:
    # Shift_JIS bytes labelled ISO-2022-JP (a real mailer's habit): the stdlib's registry
    # gives surrogate escapes, and a reply greeting that name could not be encoded.
    word = base64.b64encode("ツール".encode("cp932")).decode()
    raw = (
        f"From: =?ISO-2022-JP?B?{word}?= <bar@example.org>\n"
        "Content-Type: text/plain; charset=iso-2022-jp\n\nhello\n"
    ).encode()
    msg = parse_message(raw)
    assert msg.from_addr == "bar@example.org"
    assert msg.from_name == "ツール"
    msg.from_name.encode("utf-8")  # raises on a surrogate


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


@pytest.mark.parametrize(
    ("value", "ident"),
    [
        ("<a.1@example.org>", "a.1@example.org"),
        ("  <a.1@example.org> (Alice's message of Monday)", "a.1@example.org"),
        ("<a.1@\n example.org>", "a.1@example.org"),  # folded inside the id
        ("a.1@example.org", "a.1@example.org"),  # written without brackets
        ("<a.1@example.org", "a.1@example.org"),  # its closing bracket lost
        ("<<a.1@example.org>>", "a.1@example.org"),
        ("<" + "x" * 1000 + "@example.org>", None),  # could not be written back on one line
        ("<>", None),
    ],
)
def test_a_message_id_has_one_form_without_brackets(value: str, ident: str | None) -> None:
    assert parse_message_id(value) == ident
    raw = b"From: a@b.org\nMessage-ID: " + value.encode() + b"\nSubject: s\n\nhi\n"
    assert parse_message(raw).message_id == ident
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    assert message_id_of(headers) == ident  # what the store keeps


def test_references_keep_only_usable_ids_in_order() -> None:
    huge = "y" * 1000
    assert parse_references((f"<a@x> <{huge}@x>\n <b@x>", "<<c@x>>")) == ("a@x", "b@x", "c@x")
