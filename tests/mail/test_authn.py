"""Spoofing: only our trusted server's Authentication-Results count, a DMARC pass only for
the From privbot parsed, and a failure stops every automatic action; without a verdict an
opt-out is still applied (and says how to undo it), the rest waits for staff."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.mail.authn import sender_verdict
from privbot.mail.parse import parse_message
from privbot.models import Event, Outgoing, Suppression, Ticket
from testing.apps import mail, make_app

TRUSTED = "mx.junocloud.me"
OPT_OUT = "Please unsubscribe me from your newsletter. I do not want any more marketing e-mails."
ACCESS = "Please send me a copy of all personal data you hold about me."


def _msg(*results: str, sender: str = "victim@example.org", body: str = OPT_OUT) -> bytes:
    raw = mail(sender=sender, subject="Unsubscribe" if body == OPT_OUT else "My data", body=body)
    head = "".join(f"Authentication-Results: {r}\n" for r in results).encode()
    return head + raw


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([f"{TRUSTED}; dmarc=pass header.from=example.org"], "pass"),
        ([f"{TRUSTED}; dmarc=fail (p=reject) header.from=example.org"], "fail"),
        ([f"{TRUSTED}; dkim=pass header.d=example.org; spf=fail"], "pass"),
        ([f"{TRUSTED}; dkim=pass header.d=mail.example.org"], "none"),  # not aligned
        ([f"{TRUSTED}; spf=pass smtp.mailfrom=bounce@mail.example.org"], "none"),
        ([f"{TRUSTED}; dkim=fail header.d=example.org; spf=softfail"], "fail"),
        ([f"{TRUSTED}; none"], "none"),
        # A forged header lower down, even one naming our server, is ignored.
        ([f"{TRUSTED}; dmarc=fail", f"{TRUSTED}; dmarc=pass"], "fail"),
        (["evil.example; dmarc=pass header.from=example.org"], "none"),
        ([f"{TRUSTED} 1; dmarc=pass (comment; with semicolon) header.from=example.org"], "pass"),
        ([], "none"),
        # A pass counts only for the domain of the From privbot parsed.
        ([f"{TRUSTED}; dmarc=pass header.from=evil.example"], "none"),
        ([f"{TRUSTED}; dmarc=pass"], "none"),
        ([f"{TRUSTED}; dmarc=pass header.from=mail.example.org"], "none"),
        (
            [f"{TRUSTED}; dmarc=pass header.from=evil.example; dkim=pass header.d=example.org"],
            "pass",
        ),
        # Every DKIM result is read, not only the first.
        ([f"{TRUSTED}; dkim=fail header.d=evil.example; dkim=pass header.d=example.org"], "pass"),
    ],
)
def test_verdict(headers: list[str], expected: str) -> None:
    verdict = sender_verdict(parse_message(_msg(*headers)), TRUSTED)
    assert verdict.result == expected, verdict.detail


def test_without_a_trusted_server_nothing_is_believed() -> None:
    raw = _msg(f"{TRUSTED}; dmarc=fail")
    assert sender_verdict(parse_message(raw), None).result == "none"


def test_failed_dmarc_applies_nothing_and_marks_the_ticket(db_url: str) -> None:
    app = make_app(db_url, trusted_authserv_id=TRUSTED)
    out = pipeline.receive(app, _msg(f"{TRUSTED}; dmarc=fail header.from=example.org"),
                           source="smtp")  # fmt: skip
    with app.sessions() as s:
        assert s.scalars(select(Suppression)).all() == []
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.sender_verified is False
        assert ticket.status == "open"
        [why] = s.scalars(select(Event.detail).where(Event.kind == "classified")).all()
        assert any(r.startswith("sender not verified") for r in why["held_back"])
    assert out.reply is not None  # told, honestly, that nothing was changed


def test_verified_sender_is_acted_for(db_url: str) -> None:
    app = make_app(db_url, trusted_authserv_id=TRUSTED)
    out = pipeline.receive(app, _msg(f"{TRUSTED}; dmarc=pass header.from=example.org"),
                           source="smtp")  # fmt: skip
    with app.sessions() as s:
        assert set(s.scalars(select(Suppression.address))) == {"victim@example.org"}
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.sender_verified is True


def test_a_dmarc_pass_for_another_from_is_not_acted_on(db_url: str) -> None:
    """The upstream server passed DMARC for a From that is not the one privbot answers."""
    app = make_app(db_url, trusted_authserv_id=TRUSTED, require_verified_sender="1")
    raw = _msg(f"{TRUSTED}; dmarc=pass header.from=evil.example", body=ACCESS)
    out = pipeline.receive(app, raw, source="imap")
    with app.sessions() as s:
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.sender_verified is None
        [why] = s.scalars(select(Event.detail).where(Event.kind == "classified")).all()
        held = " ".join(why["held_back"])
        assert "sender not verified" in held and "dmarc=pass for evil.example" in held


def test_require_verified_still_applies_an_opt_out_and_says_how_to_undo_it(db_url: str) -> None:
    """An opt-out only reduces what we send; its confirmation goes to From, whose owner
    learns of it and can undo it by replying."""
    app = make_app(db_url, trusted_authserv_id=TRUSTED, require_verified_sender="1")
    out = pipeline.receive(app, _msg(), source="imap")
    with app.sessions() as s:
        assert set(s.scalars(select(Suppression.address))) == {"victim@example.org"}
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.sender_verified is None
        reply = s.get(Outgoing, out.reply)
        assert reply is not None and reply.to_addr == "victim@example.org"
        text = " ".join(reply.raw.decode().split())
    assert "We could not confirm that this message came from victim@example.org" in text
    assert "reply to this message and we will undo it" in text


def test_require_verified_holds_a_data_request_without_a_verdict(db_url: str) -> None:
    app = make_app(db_url, trusted_authserv_id=TRUSTED, require_verified_sender="1")
    out = pipeline.receive(app, _msg(body=ACCESS), source="imap")
    with app.sessions() as s:
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.type == "access" and ticket.sender_verified is None
        reply = s.get(Outgoing, out.reply)
        assert reply is not None
        assert "we have not changed anything yet" in " ".join(reply.raw.decode().split())


def test_a_failed_check_holds_an_opt_out_even_so(db_url: str) -> None:
    app = make_app(db_url, trusted_authserv_id=TRUSTED, require_verified_sender="1")
    pipeline.receive(app, _msg(f"{TRUSTED}; spf=fail smtp.mailfrom=victim@example.org"),
                     source="imap")  # fmt: skip
    with app.sessions() as s:
        assert s.scalars(select(Suppression)).all() == []
