"""Staff accounts, their sign-in sessions, failed-login slow-down, and API tokens.

Plain functions over a Session; the web app and the CLI call them. Passwords are argon2id
hashes; session and API tokens are random and only their SHA-256 is stored, so a copy of
the database lets nobody in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from privbot.audit import record
from privbot.models import ApiToken, LoginFailure, Staff, StaffSession, utcnow

SESSION_HOURS = 12
MIN_PASSWORD = 10
# Failed logins allowed per account from one client (and per client in all) in
# FAILURE_WINDOW before each further attempt must wait, doubling from 2 s up to 15 minutes.
# Not per account alone: then anyone could lock a staff member out by failing on purpose.
FREE_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
MAX_WAIT = 15 * 60

_hasher = PasswordHasher()  # stateless parameters, not state: safe to share


class AuthError(ValueError):
    """A staff or token operation cannot be done; the message says why."""


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in value) or len(value) > 320:
        raise AuthError(f"not an e-mail address: {email!r}")
    return value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- accounts ---------------------------------------------------------------------------


def add_staff(session: Session, email: str, password: str, *, actor: str = "cli") -> Staff:
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"password too short: at least {MIN_PASSWORD} characters")
    existing = session.scalar(select(Staff).where(Staff.email == email))
    if existing is not None and existing.active:
        raise AuthError(f"staff account {email} exists already")
    if existing is not None:  # re-enabling a disabled account sets a new password
        existing.password_hash = _hasher.hash(password)
        existing.active = True
        existing.disabled_at = None
        staff = existing
    else:
        staff = Staff(email=email, password_hash=_hasher.hash(password), created_at=utcnow())
        session.add(staff)
    session.flush()
    record(session, "staff_added", actor=actor, email=email)
    return staff


def disable_staff(session: Session, email: str, *, actor: str = "cli") -> Staff:
    email = normalise_email(email)
    staff = session.scalar(select(Staff).where(Staff.email == email))
    if staff is None:
        raise AuthError(f"no staff account {email}")
    staff.active = False
    staff.disabled_at = utcnow()
    # Their browsers are signed out at once, not when the cookie runs out.
    session.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))
    record(session, "staff_disabled", actor=actor, email=email)
    return staff


def list_staff(session: Session) -> list[Staff]:
    return list(session.scalars(select(Staff).order_by(Staff.email)))


def active_emails(session: Session) -> list[str]:
    return list(session.scalars(select(Staff.email).where(Staff.active).order_by(Staff.email)))


def find_active(session: Session, email: str) -> Staff | None:
    return session.scalar(select(Staff).where(Staff.email == email.strip().lower(), Staff.active))


# -- logging in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginResult:
    staff: Staff | None
    wait_seconds: int = 0  # > 0: too many failures, nothing was checked


def failure_keys(email: str, client: str) -> list[str]:
    """What failed sign-ins are counted under: this account from this client, and the client.

    Hashed: the name typed may be a password typed into the wrong field.
    """
    pair = _digest(f"{email} {client}")  # a client (an IP address) holds no space
    return [f"pair:{pair}", f"client:{client}"[:400]]


def login_wait(session: Session, keys: list[str], now: datetime | None = None) -> int:
    """Seconds still to wait before another attempt for any of `keys` is checked."""
    now = now or utcnow()
    wait = 0
    for key in keys:
        count, last = session.execute(
            select(func.count(LoginFailure.id), func.max(LoginFailure.at)).where(
                LoginFailure.key == key, LoginFailure.at > now - FAILURE_WINDOW
            )
        ).one()
        if count >= FREE_FAILURES and last is not None:
            if last.tzinfo is None:  # max() bypasses the column type on SQLite
                last = last.replace(tzinfo=now.tzinfo)
            delay = min(2 ** (count - FREE_FAILURES + 1), MAX_WAIT)
            wait = max(wait, int((last + timedelta(seconds=delay) - now).total_seconds() + 0.999))
    return max(wait, 0)


def attempt_login(
    session: Session, email: str, password: str, client: str, *, secret: str
) -> LoginResult:
    """Check a password, slowed down after repeated failures for the account from this
    client, or from this client for any account. `secret` keys the digest that stands for
    an unknown sign-in name in the audit trail."""
    email = email.strip().lower()[:320]
    keys = failure_keys(email, client)
    wait = login_wait(session, keys)
    if wait:
        return LoginResult(None, wait)
    staff = session.scalar(select(Staff).where(Staff.email == email))
    ok = False
    if staff is not None and staff.active:
        try:
            ok = _hasher.verify(staff.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
    else:
        # Hash anyway: the answer takes as long whether or not the account exists.
        _hasher.hash(password)
    if not ok:
        now = utcnow()
        # Failures older than the window count for nothing: forget them as we go.
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - FAILURE_WINDOW))
        session.add_all([LoginFailure(key=k, at=now) for k in keys])
        if staff is not None:
            record(session, "login_failed", actor=staff.email, client=client)
        else:
            # Every staff member reads the audit trail, and what was typed may be a password:
            # only a keyed digest, enough to see the same name tried again.
            digest = name_digest(email, secret) if email else None
            record(session, "login_failed", actor="unknown" if email else "anonymous",
                   client=client, name_digest=digest)  # fmt: skip
        return LoginResult(None)
    session.execute(delete(LoginFailure).where(LoginFailure.key == keys[0]))
    assert staff is not None
    if _hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = _hasher.hash(password)
    return LoginResult(staff)


def name_digest(name: str, secret: str) -> str:
    """A short keyed digest of a sign-in name: the same name gives the same digest, and
    without the secret key no guess can be checked against it."""
    message = b"sign-in name\0" + name.encode()  # the key also signs cookies: keep apart
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:12]


def start_session(session: Session, staff: Staff) -> tuple[str, StaffSession]:
    """A new sign-in: returns the token for the cookie (never stored) and the row."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = StaffSession(
        token_hash=_digest(token),
        staff_id=staff.id,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=SESSION_HOURS),
    )
    session.add(row)
    # Old expired sessions go when anyone signs in; no cleaner job needed.
    session.execute(delete(StaffSession).where(StaffSession.expires_at < now))
    record(session, "login", actor=staff.email)
    return token, row


def session_staff(session: Session, token: str) -> tuple[Staff, StaffSession] | None:
    row = session.scalar(select(StaffSession).where(StaffSession.token_hash == _digest(token)))
    if row is None or row.expires_at <= utcnow():
        return None
    staff = session.get(Staff, row.staff_id)
    if staff is None or not staff.active:
        return None
    return staff, row


def end_session(session: Session, token: str) -> None:
    found = session_staff(session, token)
    session.execute(delete(StaffSession).where(StaffSession.token_hash == _digest(token)))
    if found is not None:
        record(session, "logout", actor=found[0].email)


# -- API tokens -----------------------------------------------------------------------------


# What a token may do; the marketing system only needs to read. "write" is kept apart so a
# token that can change the register is never handed out by default.
READ_SUPPRESSIONS = "suppressions:read"
WRITE_SUPPRESSIONS = "suppressions:write"
TOKEN_SCOPES = (READ_SUPPRESSIONS, WRITE_SUPPRESSIONS)


def create_token(
    session: Session,
    name: str,
    *,
    scopes: tuple[str, ...] = (READ_SUPPRESSIONS,),
    actor: str = "cli",
) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise AuthError("token name: give a short name, e.g. marketing")
    chosen = tuple(dict.fromkeys(scopes))
    unknown = [s for s in chosen if s not in TOKEN_SCOPES]
    if not chosen or unknown:
        raise AuthError(f"token scopes: choose from {', '.join(TOKEN_SCOPES)}")
    # One live token per name, so that `token revoke NAME` means one thing.
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name, _live())) is not None:
        raise AuthError(f"a token named {name!r} exists already; revoke it first")
    token = "pbt_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(name=name, token_hash=_digest(token), scopes=" ".join(chosen), created_at=utcnow())
    )
    record(session, "token_created", actor=actor, name=name, scopes=list(chosen))
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name, ApiToken.id)))


def revoke_token(session: Session, name: str, *, actor: str = "cli") -> int:
    """Revoke the live token of that name; refused from its next request on."""
    name = name.strip()
    live = list(session.scalars(select(ApiToken).where(ApiToken.name == name, _live())))
    if not live:
        raise AuthError(f"no live token named {name!r}")
    now = utcnow()
    for row in live:  # several only in a database from before names were kept apart
        row.revoked_at = now
    record(session, "token_revoked", actor=actor, name=name, count=len(live))
    return len(live)


def token_scopes(row: ApiToken) -> tuple[str, ...]:
    return tuple(row.scopes.split())


def check_token(session: Session, token: str) -> ApiToken | None:
    """The live token row, or None. Read from the database on every request: a revoked
    token is refused at once, in every process."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = utcnow()
    return row


def _live() -> ColumnElement[bool]:
    return ApiToken.revoked_at.is_(None)
