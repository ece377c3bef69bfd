"""Verify mail privbot receives itself: SPF, DKIM and DMARC, written as our own
Authentication-Results (RFC 8601) on top of the message before it is stored.

Only the SMTP receiver calls this (IMAP intake trusts the upstream MTA's header, see
`authn.py`). The checks are the kept libraries': pyspf for SPF (client IP, HELO, MAIL
FROM), dkimpy for each DKIM signature, and DMARC (RFC 7489: policy discovery, relaxed or
strict alignment) over their results, with the organizational domain from publicsuffixlist.
authheaders, which combines them, is not used: it reads From with a parser of its own (the
very mismatch this module exists to close), its DNS hook means bytes to DKIM and text to
DMARC, a DNS timeout inside its DMARC step escapes as an exception, and it reloads the
public-suffix list on every lookup.

Every lookup goes to the resolver built from PRIVBOT_DNS_SERVERS (the system's when unset)
with PRIVBOT_DNS_TIMEOUT. A DNS failure is `temperror`, never an exception: the mail is
stored whatever happens here. Any header already in the mail that claims our authserv-id
is removed (RFC 8601 section 5), and ours goes on top, where `authn.sender_verdict` reads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import dkim
import dns.exception
import dns.nameserver
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from privbot.config import Settings
from privbot.mail.authn import authserv_id_of
from privbot.mail.parse import ParseError, parse_message

log = logging.getLogger(__name__)

# At most this many DKIM signatures are checked per message (each costs a lookup).
MAX_SIGNATURES = 5
# pyspf's own limit is ten lookups (RFC 7208 4.6.4); its whole check gets this many timeouts.
SPF_BUDGET = 5
# A property value we write must be a plain token: anything a sender chose (HELO, MAIL FROM,
# a signature's d= and i=) that is not one is left out, so it cannot inject a result.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@:\[\]]{1,255}")
_HEADER_START = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_DMARC_TAG = re.compile(r"^\s*([a-z]+)\s*=\s*(.*?)\s*$", re.IGNORECASE)


class DnsError(Exception):
    """A lookup timed out or no server answered: the result is temperror."""


@dataclass(frozen=True)
class Arrival:
    """What the SMTP session said about a message."""

    client_ip: str
    helo: str
    mail_from: str  # without angle brackets; "" is the null sender


@dataclass(frozen=True)
class Result:
    """One method's result, as written in Authentication-Results."""

    method: str  # spf, dkim, dmarc
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror, policy
    properties: tuple[tuple[str, str], ...] = ()
    comment: str = ""

    def text(self) -> str:
        out = f"{self.method}={self.result}"
        if self.comment:
            out += f" ({_comment(self.comment)})"
        for name, value in self.properties:
            if _TOKEN.fullmatch(value):
                out += f" {name}={value}"
        return out

    def prop(self, name: str) -> str:
        return next((v for n, v in self.properties if n == name), "")


@dataclass(frozen=True)
class Lookups:
    """One message's DNS: the resolver from settings, a short timeout, and what failed."""

    resolver: dns.resolver.Resolver
    timeout: float
    failed: list[str] = field(default_factory=list)  # names whose lookup failed
    missing: list[str] = field(default_factory=list)  # names without any TXT record

    def answer(self, name: str, qtype: str) -> dns.resolver.Answer | None:
        try:
            return self.resolver.resolve(
                name, qtype, lifetime=self.timeout, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            self.failed.append(name)
            raise DnsError(f"{name}: {type(exc).__name__}") from exc
        except dns.exception.DNSException as exc:  # a name that cannot be asked, and the like
            self.failed.append(name)
            raise DnsError(f"{name}: {exc}") from exc

    def txt(self, name: str) -> list[bytes]:
        """Each TXT record at `name`, its strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        answer = self.answer(name, "TXT")
        records = [b"".join(r.strings) for r in answer] if answer is not None else []
        if not records:
            self.missing.append(name)
        return records

    def dkim_key(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: the key record, or None; a failed lookup is its DnsTimeoutError."""
        text = name.decode("ascii", "replace").rstrip(".")
        try:
            records = self.txt(text)
        except DnsError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from exc
        return records[0] if records else None

    def spf_records(self, name: str, qtype: str, timeout: float) -> list[tuple[Any, Any]]:
        """What pyspf's DNSLookup returns: ((name, type), value) pairs."""
        try:
            answer = self.answer(name, qtype)
        except DnsError as exc:
            raise spf.TempError(f"DNS {exc}") from exc
        out: list[tuple[Any, Any]] = []
        for rdata in answer if answer is not None else ():
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    """PRIVBOT_DNS_SERVERS, or the system's resolver when unset; no cache, no search list."""
    if not settings.dns_servers:
        resolver = dns.resolver.Resolver(configure=True)
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in settings.dns_servers
        ]
    resolver.timeout = settings.dns_timeout
    resolver.lifetime = settings.dns_timeout
    return resolver


def load_suffixes() -> PublicSuffixList:
    """The public-suffix list the package ships (DMARC's organizational domain); 0.1 s."""
    return PublicSuffixList()


def verify(
    raw: bytes,
    arrival: Arrival,
    *,
    lookups: Lookups,
    suffixes: PublicSuffixList,
) -> list[Result]:
    """SPF, DKIM (each signature) and DMARC for one message."""
    spf_result = check_spf(arrival, lookups)
    dkim_results = check_dkim(raw, lookups)
    try:
        parsed = parse_message(raw)
        from_addr, from_all = parsed.from_addr, parsed.from_all
    except ParseError:
        from_addr, from_all = None, ()
    dmarc_result = check_dmarc(from_addr, from_all, spf_result, dkim_results, lookups, suffixes)
    return [spf_result, *dkim_results, dmarc_result]


# -- SPF ----------------------------------------------------------------------------------

# pyspf looks names up through its module-level function `spf.DNSLookup` and takes no
# resolver per query. It is replaced once, by one that asks the resolver of the check
# running in this context (a ContextVar: threads and tasks each have their own) and falls
# back to pyspf's own otherwise, so no other use of pyspf changes. The only such hook here.
_SPF_LOOKUPS: ContextVar[Lookups | None] = ContextVar("privbot_spf_lookups", default=None)


def _install_spf_hook() -> None:
    if getattr(spf.DNSLookup, "privbot_hook", False):
        return
    original = spf.DNSLookup

    def lookup(name: str, qtype: str, strict: bool = True, timeout: float = 30) -> Any:
        lookups = _SPF_LOOKUPS.get()
        if lookups is None:
            return original(name, qtype, strict, timeout)
        return lookups.spf_records(name, qtype, timeout)

    lookup.privbot_hook = True  # type: ignore[attr-defined]
    spf.DNSLookup = lookup


@contextlib.contextmanager
def _spf_dns(lookups: Lookups) -> Iterator[None]:
    _install_spf_hook()
    token = _SPF_LOOKUPS.set(lookups)
    try:
        yield
    finally:
        _SPF_LOOKUPS.reset(token)


def check_spf(arrival: Arrival, lookups: Lookups) -> Result:
    """RFC 7208 for MAIL FROM (for the null sender: postmaster@HELO, as pyspf does)."""
    ip = _client_ip(arrival.client_ip)
    identity = arrival.mail_from or (f"postmaster@{arrival.helo}" if arrival.helo else "")
    props = (("smtp.mailfrom", identity), ("smtp.helo", arrival.helo))
    if ip is None or "@" not in identity:
        return Result("spf", "none", props, "no client address or sender to check")
    try:
        with _spf_dns(lookups):
            query = spf.query(
                i=ip,
                s=arrival.mail_from,
                h=arrival.helo,
                timeout=lookups.timeout,
                querytime=lookups.timeout * SPF_BUDGET,
            )
            result, _code, _explanation = query.check()
    except Exception as exc:  # pyspf raises on some malformed input instead of permerror
        log.info("spf: check of %s from %s failed: %s", identity, ip, exc)
        return Result("spf", "permerror", props, "check failed")
    return Result("spf", str(result), props, f"client {ip}")


def _client_ip(value: str) -> str | None:
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


# -- DKIM ---------------------------------------------------------------------------------


def check_dkim(raw: bytes, lookups: Lookups) -> list[Result]:
    """A result per DKIM-Signature (the first MAX_SIGNATURES), or one `none`."""
    try:
        signer = dkim.DKIM(raw, minkey=1024, timeout=lookups.timeout)
    except Exception as exc:  # a message dkimpy cannot even split into headers and body
        return [Result("dkim", "permerror", (), f"unreadable: {type(exc).__name__}")]
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return [Result("dkim", "none", (), "no signature")]
    return [_one_signature(signer, idx, lookups) for idx in range(min(count, MAX_SIGNATURES))]


def _one_signature(signer: dkim.DKIM, idx: int, lookups: Lookups) -> Result:
    signer.signature_fields = {}
    failed, missing = len(lookups.failed), len(lookups.missing)
    comment = ""
    try:
        ok = bool(signer.verify(idx=idx, dnsfunc=lookups.dkim_key))
    except dkim.ValidationError as exc:  # body hash, expired, signed in the future
        ok, comment = False, str(exc)
        result = "fail"
    except dkim.DKIMException as exc:  # malformed signature or key
        ok, comment = False, str(exc)
        result = "permerror"
    except Exception as exc:
        ok, comment = False, f"{type(exc).__name__}"
        result = "permerror"
    else:
        if ok:
            result = "pass"
        elif len(lookups.failed) > failed:
            result, comment = "temperror", "key lookup failed"
        elif len(lookups.missing) > missing:
            result, comment = "permerror", "no key published"
        else:
            result = "fail"
    fields = signer.signature_fields or {}
    props = tuple(
        (f"header.{tag}", fields[tag.encode()].decode("ascii", "replace").strip())
        for tag in ("d", "i", "s")
        if tag.encode() in fields
    )
    return Result("dkim", result, props, comment[:80])


# -- DMARC --------------------------------------------------------------------------------


def org_domain(suffixes: PublicSuffixList, domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (the domain itself if no more)."""
    return suffixes.privatesuffix(domain) or domain


def check_dmarc(
    from_addr: str | None,
    from_all: Sequence[str],
    spf_result: Result,
    dkim_results: Sequence[Result],
    lookups: Lookups,
    suffixes: PublicSuffixList,
) -> Result:
    """RFC 7489 for the From privbot parsed (the same parser its verdict reads)."""
    if not from_addr or "@" not in from_addr:
        return Result("dmarc", "permerror", (), "no usable From")
    domains = {a.rpartition("@")[2] for a in from_all if "@" in a}
    domain = from_addr.rpartition("@")[2].rstrip(".").lower()
    if len(domains) > 1:
        return Result("dmarc", "permerror", (("header.from", domain),), "several From domains")
    org = org_domain(suffixes, domain)
    try:
        record = _dmarc_record(lookups, domain)
        if record is None and org != domain:
            record = _dmarc_record(lookups, org)
            if record is not None:
                record = {**record, "p": record.get("sp", record["p"])}
    except DnsError:
        return Result("dmarc", "temperror", (("header.from", domain),), "policy lookup failed")
    if record is None:
        return Result("dmarc", "none", (("header.from", domain),), "no policy")

    def aligned(other: str, mode: str) -> bool:
        other = other.rpartition("@")[2].rstrip(".").lower()
        if not other:
            return False
        return other == domain if mode == "s" else org_domain(suffixes, other) == org

    passed = any(
        r.result == "pass" and aligned(r.prop("header.d"), record.get("adkim", "r"))
        for r in dkim_results
    ) or (
        spf_result.result == "pass"
        and aligned(spf_result.prop("smtp.mailfrom"), record.get("aspf", "r"))
    )
    props = (("header.from", domain), ("policy.dmarc", record["p"]))
    return Result("dmarc", "pass" if passed else "fail", props)


def _dmarc_record(lookups: Lookups, domain: str) -> dict[str, str] | None:
    """The one DMARC record at _dmarc.DOMAIN as tags; None if none (or several, 6.6.3)."""
    records = [
        r.decode("utf-8", "replace")
        for r in lookups.txt(f"_dmarc.{domain}")
        if r.lstrip().startswith(b"v=DMARC1")
    ]
    if len(records) != 1:
        return None
    tags: dict[str, str] = {}
    for item in records[0].split(";"):
        match = _DMARC_TAG.match(item)
        if match:
            tags.setdefault(match.group(1).lower(), match.group(2).lower())
    if tags.get("p") not in ("none", "quarantine", "reject"):
        return None  # 6.6.3: a record without a valid policy is no record
    return tags


# -- the header ---------------------------------------------------------------------------


def header_value(authserv_id: str, results: Sequence[Result]) -> str:
    if not results:
        return f"{authserv_id}; none"
    return f"{authserv_id};\r\n\t" + ";\r\n\t".join(r.text() for r in results)


def _comment(text: str) -> str:
    # Inside a comment only balanced text is safe: drop brackets, backslashes and controls.
    return re.sub(r"[()\\\x00-\x1f\x7f]", " ", text).strip()[:120]


def without_our_results(raw: bytes, authserv_id: str) -> tuple[bytes, int]:
    """The message without the Authentication-Results that claim `authserv_id`
    (RFC 8601 section 5), and how many there were. Only the header block is read; a line
    that starts no field belongs to the one before, as the parser mends it."""
    eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    head, sep, body = raw.partition(eol + eol)
    if not sep:
        head, body = raw, b""
    fields: list[list[bytes]] = []
    for line in head.split(eol):
        if _HEADER_START.match(line) is not None or not fields:
            fields.append([line])
        else:
            fields[-1].append(line)
    kept = [f for f in fields if not _claims(f, authserv_id)]
    if len(kept) == len(fields):
        return raw, 0
    return eol.join(line for f in kept for line in f) + sep + body, len(fields) - len(kept)


def _claims(lines: list[bytes], authserv_id: str) -> bool:
    """Is this field an Authentication-Results naming `authserv_id`?"""
    match = _HEADER_START.match(lines[0])
    if match is None or match.group(1).lower() != b"authentication-results":
        return False
    value = b" ".join([lines[0][match.end() :], *lines[1:]]).decode("utf-8", "replace")
    return authserv_id_of(value) == authserv_id.lower()


def stamp(
    raw: bytes,
    arrival: Arrival,
    *,
    authserv_id: str,
    lookups: Lookups,
    suffixes: PublicSuffixList,
) -> bytes:
    """The message as it is stored: forged copies of our header gone, ours on top.

    Never raises: a failed check is written as such, and the mail is stored anyway.
    """
    try:
        results = verify(raw, arrival, lookups=lookups, suffixes=suffixes)
        value = header_value(authserv_id, results)
    except Exception:
        log.exception("verify: checking a message from %s failed", arrival.client_ip)
        value = f"{authserv_id}; none (verification failed)"
    try:
        cleaned, removed = without_our_results(raw, authserv_id)
    except Exception:
        # Ours still goes on top, and only the topmost is read.
        log.exception("verify: could not remove forged Authentication-Results")
        cleaned, removed = raw, 0
    if removed:
        log.info("verify: removed %d Authentication-Results claiming %s", removed, authserv_id)
    eol = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    return b"Authentication-Results: " + value.encode().replace(b"\r\n", eol) + eol + cleaned
