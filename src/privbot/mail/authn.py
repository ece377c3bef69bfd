"""Is the sender who From says? Read from our own receiving server's Authentication-Results.

From is easy to forge, and so is an Authentication-Results header: anyone can write one.
Only the topmost one, added by the server we are configured to trust (its authserv-id,
PRIVBOT_TRUSTED_AUTHSERV_ID), is believed; every other copy is ignored. The receiving MTA
must strip copies that claim its authserv-id on the way in (RFC 8601 section 5).
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
    authserv, _, rest = headers[0].partition(";")
    words = authserv.split()
    if not words or words[0].lower() != trusted_authserv_id.lower():
        return Verdict("none", f"Authentication-Results not from {trusted_authserv_id}")
    domain = (msg.from_addr or "").rpartition("@")[2].lower()
    results = _results(rest)
    if "dmarc" in results:
        value, _ = results["dmarc"]
        if value == "pass":
            return Verdict("pass", "dmarc=pass")
        if value in _FAILED:
            return Verdict("fail", f"dmarc={value}")
    for method, key in (("dkim", "header.d"), ("spf", "smtp.mailfrom")):
        value, props = results.get(method, ("", {}))
        if value == "pass" and _aligned(props.get(key, ""), domain):
            return Verdict("pass", f"{method}=pass for {domain}")
    failed = [f"{m}={v}" for m, (v, _) in results.items() if m in ("dkim", "spf") and v in _FAILED]
    if failed:
        return Verdict("fail", ", ".join(failed))
    return Verdict("none", "no conclusive result")


def _results(text: str) -> dict[str, tuple[str, dict[str, str]]]:
    """method -> (result, properties) from the part after the authserv-id."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    while True:  # comments may nest one level in practice; strip until none are left
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    for item in text.split(";"):
        match = _RESULT.match(item)
        if match is None:
            continue
        method, value, props = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if method not in out:  # the first result per method counts
            out[method] = (value, {k.lower(): v.lower() for k, v in _PROPERTY.findall(props)})
    return out


def _aligned(value: str, domain: str) -> bool:
    """Relaxed alignment: the authenticated domain is the From domain or a parent of it."""
    value = value.rpartition("@")[2].strip().lower()
    return bool(value and domain) and (domain == value or domain.endswith("." + value))
