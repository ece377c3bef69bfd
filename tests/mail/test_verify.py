"""verify: SPF, DKIM and DMARC as the SMTP receiver computes them, against a real DNS server
on loopback; the forged copies of our header it removes; what it writes."""

from __future__ import annotations

import pytest

from privbot.config import load_settings
from privbot.mail.authn import sender_verdict
from privbot.mail.parse import parse_message
from privbot.mail.verify import (
    Arrival,
    Lookups,
    load_suffixes,
    make_resolver,
    stamp,
    without_our_results,
)
from testing.apps import DkimKey, mail
from testing.servers import DnsServer

OURS = "mx.junocloud.me"
SUFFIXES = load_suffixes()


@pytest.fixture
def dns(dns_server: DnsServer, dkim_test_key: DkimKey) -> DnsServer:
    dns_server.txt("signed.example", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.txt("sel._domainkey.signed.example", dkim_test_key.record)
    dns_server.txt("_dmarc.signed.example", "v=DMARC1; p=quarantine; sp=reject; adkim=s")
    dns_server.txt("other.example", "v=spf1 ip4:127.0.0.1 -all")
    return dns_server


def _stamp(dns: DnsServer, raw: bytes, arrival: Arrival) -> tuple[bytes, str]:
    settings = load_settings({"PRIVBOT_DNS_SERVERS": dns.setting})
    lookups = Lookups(make_resolver(settings), settings.dns_timeout)
    out = stamp(raw, arrival, authserv_id=OURS, lookups=lookups, suffixes=SUFFIXES)
    top = parse_message(out).headers["authentication-results"][0]
    return out, top


HOST = Arrival("127.0.0.1", "mx.signed.example", "ann@signed.example")


def test_a_signed_aligned_mail_passes_and_the_verdict_believes_it(
    dns: DnsServer, dkim_test_key: DkimKey
) -> None:
    raw = dkim_test_key.sign(mail(sender="ann@signed.example"), "signed.example")
    out, top = _stamp(dns, raw, HOST)
    assert out.startswith(b"Authentication-Results: mx.junocloud.me;")
    assert "spf=pass" in top and "dkim=pass" in top
    assert "dmarc=pass header.from=signed.example policy.dmarc=quarantine" in top
    assert sender_verdict(parse_message(out), OURS).result == "pass"
    assert ("_dmarc.signed.example", "TXT") in dns.queries  # asked the loopback server


def test_a_changed_body_breaks_the_signature(dns: DnsServer, dkim_test_key: DkimKey) -> None:
    raw = dkim_test_key.sign(mail(sender="ann@signed.example"), "signed.example")
    _, top = _stamp(dns, raw.replace(b"what do you store", b"delete everything"), HOST)
    assert "dkim=fail" in top and "header.d=signed.example" in top
    # SPF still passes and aligns (relaxed aspf): DMARC passes on it.
    assert "dmarc=pass" in top


def test_a_signature_without_a_published_key_is_a_permerror(
    dns: DnsServer, dkim_test_key: DkimKey
) -> None:
    raw = dkim_test_key.sign(mail(sender="ann@signed.example"), "signed.example", "gone")
    _, top = _stamp(dns, raw, Arrival("127.0.0.9", "x.example", "ann@signed.example"))
    assert "dkim=permerror (no key published)" in top
    assert "spf=fail" in top and "dmarc=fail" in top


def test_strict_dkim_alignment_and_the_subdomain_policy(
    dns: DnsServer, dkim_test_key: DkimKey
) -> None:
    """adkim=s: a signature of signed.example does not align with From at a subdomain,
    whose policy is the organizational domain's sp=reject."""
    raw = dkim_test_key.sign(mail(sender="ann@news.signed.example"), "signed.example")
    _, top = _stamp(dns, raw, Arrival("127.0.0.9", "x.example", "bounce@elsewhere.example"))
    assert "dkim=pass" in top
    assert "dmarc=fail header.from=news.signed.example policy.dmarc=reject" in top


def test_the_null_sender_is_checked_for_its_helo(dns: DnsServer) -> None:
    _, top = _stamp(
        dns, mail(sender="ann@signed.example"), Arrival("127.0.0.1", "signed.example", "")
    )
    assert "spf=pass" in top and "smtp.mailfrom=postmaster@signed.example" in top


def test_from_with_two_domains_never_passes_dmarc(dns: DnsServer, dkim_test_key: DkimKey) -> None:
    raw = dkim_test_key.sign(mail(sender="ann@signed.example, eve@other.example"), "signed.example")
    out, top = _stamp(dns, raw, HOST)
    assert "dmarc=permerror (several From domains)" in top
    assert sender_verdict(parse_message(out), OURS).result == "fail"


def test_a_from_the_stdlib_reads_two_ways_gets_no_dmarc_pass(
    dns: DnsServer, dkim_test_key: DkimKey
) -> None:
    # A verifier reading the first mailbox would pass signed.example; privbot reads no From.
    raw = dkim_test_key.sign(
        mail(headers={"From": "ann@signed.example <victim@other.example>"}), "signed.example"
    )
    _, top = _stamp(dns, raw, HOST)
    assert "dmarc=permerror (no usable From)" in top


def test_what_the_sender_chose_cannot_inject_a_result(dns: DnsServer) -> None:
    """HELO and MAIL FROM are the client's words: one that is not a plain token is left out."""
    arrival = Arrival("127.0.0.9", "x; dmarc=pass header.from=victim.example", "a@b (c)")
    out, top = _stamp(dns, mail(sender="victim@signed.example"), arrival)
    assert "victim.example" not in top and "smtp.helo" not in top
    assert sender_verdict(parse_message(out), OURS).result != "pass"


def test_a_message_that_cannot_be_checked_still_gets_our_header() -> None:
    settings = load_settings({"PRIVBOT_DNS_SERVERS": "127.0.0.1:9"})
    lookups = Lookups(make_resolver(settings), 0.2)
    raw = b"\x00\xff garbage without headers"
    out = stamp(raw, HOST, authserv_id=OURS, lookups=lookups, suffixes=SUFFIXES)
    assert out.startswith(b"Authentication-Results: mx.junocloud.me;") and out.endswith(raw)


@pytest.mark.parametrize(
    "forged",
    [
        b"Authentication-Results: mx.junocloud.me; dmarc=pass\n",
        b"authentication-results : MX.JunoCloud.ME 1; dmarc=pass\n",
        b"Authentication-Results: (ours, honest) mx.junocloud.me;\n\tdmarc=pass\n",
        b"Authentication-Results:\n mx.junocloud.me\n ; dkim=pass\n",
    ],
)
def test_every_form_of_a_header_claiming_our_id_is_removed(forged: bytes) -> None:
    body = b"\nAuthentication-Results: mx.junocloud.me; in the body, kept\n"
    raw = b"From: a@example.org\n" + forged + b"Authentication-Results: other.example; none\n"
    cleaned, removed = without_our_results(raw + b"Subject: s\n" + body, OURS)
    assert removed == 1
    assert cleaned == b"From: a@example.org\nAuthentication-Results: other.example; none\n" + (
        b"Subject: s\n" + body
    )


def test_headers_of_other_servers_and_lookalikes_are_kept() -> None:
    raw = (
        b"Authentication-Results: mx.junocloud.me.evil.example; dmarc=pass\r\n"
        b"X-Authentication-Results: mx.junocloud.me; dmarc=pass\r\n"
        b"From: a@example.org\r\n\r\nbody\r\n"
    )
    assert without_our_results(raw, OURS) == (raw, 0)
