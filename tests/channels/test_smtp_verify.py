"""Mail privbot receives itself is verified there: SPF, DKIM and DMARC against a real DNS
server on loopback, its own Authentication-Results on top, sender-written ones that claim
its authserv-id removed, and the verdict on the ticket. No resolver is mocked."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.channels.smtp import start_receiver
from privbot.models import Message, Suppression, Ticket
from testing.apps import DkimKey, mail, make_app
from testing.servers import DnsServer, SilentDns, free_port

OPT_OUT = "Please unsubscribe me from your newsletter. I do not want any more marketing e-mails."
OURS = "junocloud.me"  # the receiver's authserv-id when none is configured: our domain


@pytest.fixture
def domains(dns_server: DnsServer, dkim_test_key: DkimKey) -> DnsServer:
    """signed.example: SPF allows 127.0.0.1 only, DKIM key at sel._domainkey, DMARC reject.
    relay.example: SPF allows 127.0.0.1, no DMARC (a bulk sender's bounce domain)."""
    dns_server.txt("signed.example", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.txt("sel._domainkey.signed.example", dkim_test_key.record)
    dns_server.txt("_dmarc.signed.example", "v=DMARC1; p=reject; rua=mailto:d@signed.example")
    dns_server.txt("relay.example", "v=spf1 ip4:127.0.0.1 -all")
    return dns_server


def _receiver(db_url: str, dns: str, **env: str) -> Iterator[tuple[App, int]]:
    port = free_port()
    app = make_app(db_url, listen=f"127.0.0.1:{port}", dns_servers=dns, **env)
    controller = start_receiver(app)
    try:
        yield app, port
    finally:
        controller.stop()
        app.close()


@pytest.fixture
def receiving(db_url: str, domains: DnsServer) -> Iterator[tuple[App, int]]:
    yield from _receiver(db_url, domains.setting)


@pytest.fixture
def receiving_trusted(db_url: str, domains: DnsServer) -> Iterator[tuple[App, int]]:
    """The receiver with its authserv-id configured (as a site would), same name as ours."""
    yield from _receiver(db_url, domains.setting, trusted_authserv_id=OURS)


def _send(port: int, raw: bytes, mail_from: str, source: str = "127.0.0.1") -> None:
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="mx.signed.example", timeout=30,
        source_address=(source, 0),
    ) as smtp:  # fmt: skip
        smtp.sendmail(mail_from, ["support@junocloud.me"], raw)


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _opt_out(sender: str) -> bytes:
    """A clear opt-out (as SMTP carries it: CRLF), the request every check here is about."""
    return _crlf(mail(sender=sender, subject="Unsubscribe", body=OPT_OUT))


@dataclass(frozen=True)
class Stored:
    raw: bytes
    auth_result: str | None


def _stored(app: App) -> Stored:
    with app.sessions() as s:
        row = s.execute(select(Message.raw, Message.auth_result)).one()
        return Stored(row.raw, row.auth_result)


def _top_header(raw: bytes) -> str:
    """The first header field, unfolded."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    lines = head.split("\n")
    field = [lines[0]]
    for line in lines[1:]:
        if not line[:1].isspace():
            break
        field.append(line.strip())
    return " ".join(field)


def _ticket(app: App) -> Ticket:
    pipeline.process_pending(app)
    with app.sessions() as s:
        ticket = s.scalars(select(Ticket)).one()
        s.expunge(ticket)
        return ticket


def _suppressed(app: App) -> list[str]:
    with app.sessions() as s:
        return sorted(set(s.scalars(select(Suppression.address))))


def test_signed_mail_from_an_allowed_host_is_verified_by_the_receiver(
    receiving: tuple[App, int], dkim_test_key: DkimKey
) -> None:
    app, port = receiving
    raw = dkim_test_key.sign(_opt_out("Ann <ann@signed.example>"), "signed.example")
    _send(port, raw, "ann@signed.example")
    stored = _stored(app).raw
    top = _top_header(stored)
    assert top.startswith(f"Authentication-Results: {OURS};"), top
    assert "spf=pass" in top and "smtp.mailfrom=ann@signed.example" in top
    assert "dkim=pass" in top and "header.d=signed.example" in top
    assert "dmarc=pass" in top and "header.from=signed.example" in top
    ticket = _ticket(app)
    assert ticket.sender_verified is True
    assert _stored(app).auth_result == "pass: dmarc=pass for signed.example"
    assert _suppressed(app) == ["ann@signed.example"]


def test_a_sender_written_dmarc_pass_claiming_our_id_is_removed_and_not_believed(
    receiving_trusted: tuple[App, int],
) -> None:
    """The incident: a forger wrote our authserv-id's dmarc=pass on top, and it was believed."""
    app, port = receiving_trusted
    raw = (
        f"Authentication-Results: {OURS}; dmarc=pass header.from=signed.example\n".encode()
        # Written as a forger would to slip past a careless filter: another case, a comment
        # before the id, folded; and one of another server, which stays.
        + b"Authentication-Results: (trust me)\n JUNOCLOUD.ME; dkim=pass header.d=signed.example\n"
        + b"Authentication-Results: mx.elsewhere.example; dmarc=pass\n"
        + _opt_out("victim@signed.example")
    )
    _send(port, _crlf(raw), "victim@signed.example", source="127.0.0.2")  # SPF allows .1 only
    stored = _stored(app).raw.decode()
    top = _top_header(stored.encode())
    assert top.startswith(f"Authentication-Results: {OURS};")
    assert "spf=fail" in top and "dkim=none" in top and "dmarc=fail" in top
    assert stored.count("Authentication-Results:") == 2  # ours, and the other server's
    assert "mx.elsewhere.example; dmarc=pass" in stored
    assert "trust me" not in stored and "dmarc=pass header.from=signed.example" not in stored
    ticket = _ticket(app)
    assert ticket.sender_verified is False
    assert _suppressed(app) == []  # a failed check applies nothing


def test_dmarc_fails_when_nothing_aligns_with_from(receiving: tuple[App, int]) -> None:
    """SPF passes, but for the bounce domain, not for From's: DMARC (p=reject) fails."""
    app, port = receiving
    _send(port, _opt_out("ann@signed.example"), "bounces@relay.example")
    top = _top_header(_stored(app).raw)
    assert "spf=pass" in top and "smtp.mailfrom=bounces@relay.example" in top
    assert "dmarc=fail header.from=signed.example policy.dmarc=reject" in top
    ticket = _ticket(app)
    assert ticket.sender_verified is False
    assert _stored(app).auth_result == "fail: dmarc=fail"
    assert _suppressed(app) == []


def test_a_signature_of_another_domain_does_not_pass_dmarc_for_from(
    receiving: tuple[App, int], domains: DnsServer, dkim_test_key: DkimKey
) -> None:
    """A valid signature and SPF pass, both for relay.example: From says signed.example."""
    domains.txt("sel._domainkey.relay.example", dkim_test_key.record)
    app, port = receiving
    raw = dkim_test_key.sign(_opt_out("ann@signed.example"), "relay.example")
    _send(port, raw, "bounces@relay.example")
    top = _top_header(_stored(app).raw)
    assert "dkim=pass" in top and "header.d=relay.example" in top
    assert "dmarc=fail header.from=signed.example" in top
    assert _ticket(app).sender_verified is False


def test_dns_unreachable_mail_is_stored_and_the_verdict_is_none(
    db_url: str, silent_dns: SilentDns
) -> None:
    """Every lookup times out: 250 all the same, temperror written, nothing believed."""
    forged = {"Authentication-Results": f"{OURS}; dmarc=pass header.from=signed.example"}
    raw = mail(sender="victim@signed.example", subject="Unsubscribe", body=OPT_OUT, headers=forged)
    for app, port in _receiver(db_url, silent_dns.setting, trusted_authserv_id=OURS,
                               dns_timeout="0.3", require_verified_sender="1"):  # fmt: skip
        started = time.monotonic()
        _send(port, _crlf(raw), "victim@signed.example")
        assert time.monotonic() - started < 10  # short timeouts: the 250 is not held up long
        message = _stored(app)  # stored: a DNS failure never loses mail
        top = _top_header(message.raw)
        assert top.startswith(f"Authentication-Results: {OURS};")
        assert "spf=temperror" in top and "dmarc=temperror" in top
        assert b"dmarc=pass" not in message.raw
        ticket = _ticket(app)
        assert ticket.sender_verified is None
        assert (_stored(app).auth_result or "").startswith("none:")
