"""Spoofing: only our trusted server's Authentication-Results count, and a failure stops
every automatic action."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.mail.authn import sender_verdict
from privbot.mail.parse import parse_message
from privbot.models import Event, Suppression, Ticket
from testing.apps import mail, make_app

TRUSTED = "mx.junocloud.me"
OPT_OUT = "Please unsubscribe me from your newsletter."


def _msg(*results: str, sender: str = "victim@example.org") -> bytes:
    raw = mail(sender=sender, body=OPT_OUT)
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
        assert s.scalars(select(Suppression.address)).all() == ["victim@example.org"]
        ticket = s.get(Ticket, out.ticket)
        assert ticket is not None and ticket.sender_verified is True


def test_require_verified_holds_mail_without_a_verdict(db_url: str) -> None:
    app = make_app(db_url, trusted_authserv_id=TRUSTED, require_verified_sender="1")
    pipeline.receive(app, _msg(), source="smtp")
    with app.sessions() as s:
        assert s.scalars(select(Suppression)).all() == []
