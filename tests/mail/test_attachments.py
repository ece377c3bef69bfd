"""An attachment's bytes, found by the number the parser lists it under, and taken out of a
message again without touching the rest of it."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from privbot.mail.parse import (
    REMOVED_HEADER,
    ParseError,
    attachment_data,
    parse_message,
    remove_attachments,
)

NOTE = "attachment removed after the evidence was checked"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40  # binary, every byte value


def _evidence_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann Example <ann@example.org>"
    msg["To"] = "support@junocloud.me"
    msg["Subject"] = "My passport [JC-7]"
    msg["Message-ID"] = "<evidence-1@example.org>"
    msg.set_content("Here is my passport.\nFrom the scan office, yesterday.\n")
    msg.add_alternative("<p>Here is my <b>passport</b>.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="pässport.pdf")
    msg.add_attachment(b"GIF89a\x01\x00", maintype="image", subtype="gif", filename="face.gif")
    return msg.as_bytes()


def test_each_listed_attachment_has_its_own_bytes() -> None:
    raw = _evidence_mail()
    listed = parse_message(raw).attachments
    assert [(a.filename, a.content_type) for a in listed] == [
        ("pässport.pdf", "application/pdf"),
        ("face.gif", "image/gif"),
    ]
    first, second = attachment_data(raw, 0), attachment_data(raw, 1)
    assert first.data == PDF and first.attachment == listed[0]
    assert second.data == b"GIF89a\x01\x00" and second.attachment == listed[1]
    with pytest.raises(IndexError):
        attachment_data(raw, 2)
    with pytest.raises(ParseError):
        attachment_data(b"   ", 0)


def test_the_numbering_follows_the_walk_inside_alternatives_and_forwards() -> None:
    # An attachment inside one alternative of a multipart/alternative and one inside an
    # inline forwarded message: the parser's order is document order, and so is ours.
    inner = EmailMessage()
    inner["From"] = "bob@example.org"
    inner["Subject"] = "fwd"
    inner.set_content("the forwarded words")
    inner.add_attachment(b"inner-bytes", maintype="application", subtype="octet-stream",
                         filename="inner.bin")  # fmt: skip
    related = EmailMessage()
    related.set_content("<p>hi<img src='cid:logo'></p>", subtype="html")
    related.add_related(b"PNGDATA", maintype="image", subtype="png", cid="<logo>")
    outer = EmailMessage()
    outer["From"] = "ann@example.org"
    outer["Subject"] = "two"
    outer.make_mixed()
    alternative = EmailMessage()
    alternative.set_content("hi")
    alternative.make_alternative()
    alternative.attach(related)
    outer.attach(alternative)
    forwarded = EmailMessage()
    forwarded.set_content(inner)  # message/rfc822, inline
    outer.attach(forwarded)
    raw = outer.as_bytes()
    names = [a.filename or a.content_type for a in parse_message(raw).attachments]
    assert names == ["image/png", "inner.bin"]
    assert attachment_data(raw, 0).data == b"PNGDATA"
    assert attachment_data(raw, 1).data == b"inner-bytes"


def test_removal_replaces_each_attachment_by_a_note_and_keeps_the_rest() -> None:
    raw = _evidence_mail()
    before = parse_message(raw)
    stripped, count = remove_attachments(raw, NOTE)
    assert count == 2
    assert PDF[:200] not in stripped and b"GIF89a" not in stripped
    after = parse_message(stripped)
    # The words, headers and thread ids stay as they were.
    assert (after.text, after.subject, after.from_addr, after.message_id) == (
        before.text, before.subject, before.from_addr, before.message_id,
    )  # fmt: skip
    # The plain alternative, untouched too: no ">From" escaping of its lines.
    assert b"\nFrom the scan office" in stripped and b">From" not in stripped
    assert [(a.filename, a.content_type, a.removed) for a in after.attachments] == [
        ("pässport.pdf", "text/plain", True),
        ("face.gif", "text/plain", True),
    ]
    assert attachment_data(stripped, 0).data == (NOTE + "\n").encode()
    # Done once: a second removal finds nothing to remove and returns the bytes unchanged.
    again, count = remove_attachments(stripped, NOTE)
    assert (again, count) == (stripped, 0)


def test_a_message_that_is_one_attachment_keeps_its_headers() -> None:
    raw = (
        b"From: ann@example.org\r\nTo: support@junocloud.me\r\nSubject: scan\r\n"
        b"Message-ID: <bare@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/pdf; name="id.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKc2VjcmV0\r\n"
    )
    assert attachment_data(raw, 0).data == b"%PDF-1.4\nsecret"
    stripped, count = remove_attachments(raw, NOTE)
    assert count == 1 and b"JVBERi0" not in stripped
    parsed = parse_message(stripped)
    assert (parsed.from_addr, parsed.subject, parsed.message_id) == (
        "ann@example.org", "scan", "bare@example.org",
    )  # fmt: skip
    assert parsed.attachments[0].removed


def test_a_forged_removal_mark_does_not_keep_a_file_from_being_removed() -> None:
    # Anyone can write the header: on a big part (or one that is no text) it counts for nothing.
    msg = EmailMessage()
    msg["From"] = "mallory@example.org"
    msg["Subject"] = "x"
    msg.set_content("see attached")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="keep-me.pdf",
                       headers=[f"{REMOVED_HEADER}: yes"])  # fmt: skip
    raw = msg.as_bytes()
    assert parse_message(raw).attachments[0].removed is False
    assert attachment_data(raw, 0).data == PDF
    stripped, count = remove_attachments(raw, NOTE)
    assert count == 1 and parse_message(stripped).attachments[0].removed


def test_a_hostile_file_name_cannot_break_the_note_part() -> None:
    raw = (
        b"From: mallory@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''evil%0D%0ABcc%3A%20x%40y.z%0A.exe\r\n"
        b"\r\nAAAA\r\n--b--\r\n"
    )
    stripped, count = remove_attachments(raw, NOTE)
    assert count == 1
    parsed = parse_message(stripped)
    assert parsed.header("bcc") is None and parsed.text == "hello"
    assert parsed.attachments[0].removed
    assert "\n" not in (parsed.attachments[0].filename or "")
