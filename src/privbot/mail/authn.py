"""Is the sender who From says? Read from our own receiving server's Authentication-Results.

From is easy to forge, and so is an Authentication-Results header: anyone can write one.
Only the topmost one, added by the server we trust (its authserv-id), is believed; every
other copy is ignored. The receiving server must strip copies that claim its authserv-id
on the way in (RFC 8601 section 5): privbot's own SMTP receiver does (`verify.py`), an
upstream MTA feeding the IMAP mailbox must. A DMARC pass counts only for the domain of
the From privbot parsed (its `header.from`): a pass for some other From (a second From
field, another reading of a tricky one) says nothing about the address we answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from privbot.mail.parsed import ParsedMessage

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z]+)(.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"([a-z0-9_.-]+)\s*=\s*([^\s;]+)", re.IGNORECASE)
_FAILED = frozenset({"fail", "softfail", "permerror"})


@dataclass(frozen=True)
class Verdict:
    result: str  # pass, fail, or none (nothing trustworthy was said)
    detail: str  # what decided it, for staff

    @property
    def failed(self) -> bool:
        return self.result == "fail"


def sender_verdict(msg: ParsedMessage, trusted_authserv_id: str | None) -> Verdict:
    if not trusted_authserv_id:
        return Verdict("none", "no trusted receiving server configured")
    headers = msg.headers.get("authentication-results", ())
    if not headers:
        return Verdict("none", "no Authentication-Results")
    # The topmost header is the one our server added last; anything below came with the mail.
    if authserv_id_of(headers[0]) != trusted_authserv_id.lower():
        return Verdict("none", f"Authentication-Results not from {trusted_authserv_id}")
    domain = (msg.from_addr or "").rpartition("@")[2].rstrip(".").lower()
    results = _results(_strip_comments(headers[0]).partition(";")[2])
    notes: list[str] = []
    for value, props in results.get("dmarc", [])[:1]:  # the first DMARC result counts
        if value in _FAILED:
            return Verdict("fail", f"dmarc={value}")
        checked = props.get("header.from", "").rstrip(".")
        if value == "pass" and domain and checked == domain:
            return Verdict("pass", f"dmarc=pass for {domain}")
        if value == "pass":
            # A pass for another domain than the From we answer says nothing about it.
            notes.append(f"dmarc=pass for {checked or 'no domain'}, not {domain or 'the From'}")
    for method, key in (("dkim", "header.d"), ("spf", "smtp.mailfrom")):
        for value, props in results.get(method, []):
            if value == "pass" and _aligned(props.get(key, ""), domain):
                return Verdict("pass", f"{method}=pass for {domain}")
    failed = [
        f"{m}={v}" for m in ("dkim", "spf") for v, _ in results.get(m, [])[:1] if v in _FAILED
    ]
    if failed:
        return Verdict("fail", ", ".join([*failed, *notes]))
    return Verdict("none", "; ".join(notes) or "no conclusive result")


def authserv_id_of(value: str) -> str:
    """The authserv-id an Authentication-Results value names (comments skipped), lower-case."""
    words = _strip_comments(value).partition(";")[0].split()
    return words[0].lower() if words else ""


def _strip_comments(text: str) -> str:
    while True:  # comments may nest; strip the innermost until none are left
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            return text
        text = stripped


def _results(text: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """method -> [(result, properties)], in order, from the part after the authserv-id."""
    out: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for item in text.split(";"):
        match = _RESULT.match(item)
        if match is None:
            continue
        method, value, props = match.group(1).lower(), match.group(2).lower(), match.group(3)
        found = {k.lower(): v.lower() for k, v in _PROPERTY.findall(props)}
        out.setdefault(method, []).append((value, found))
    return out


def _aligned(value: str, domain: str) -> bool:
    """Relaxed alignment: the authenticated domain is the From domain or a parent of it."""
    value = value.rpartition("@")[2].strip().lower()
    return bool(value and domain) and (domain == value or domain.endswith("." + value))
