"""Settings: read once from the environment (and an optional TOML file), validated, frozen.

Every problem is a `ConfigError` whose message names the setting, so start-up can print
one clear line instead of a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "PRIVBOT_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    user: str
    password: str | None  # None: log in with OAuth (PRIVBOT_OAUTH_*)
    folder: str
    ssl: bool


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None
    password: str | None
    ssl: bool
    starttls: bool


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///privbot.db"
    address: str = "support@junocloud.me"
    # Further addresses that reach the same mailbox (aliases); replies always come from `address`.
    aliases: tuple[str, ...] = ()
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    # OAuth 2.0 for IMAP and SMTP (privbot/mail/oauth.py): an IMAP or SMTP URL with a user and
    # no password logs in with an access token from this endpoint, by a refresh token or, with
    # none, the client-credentials grant. Secrets come from a file or the environment (never a
    # URL); the _file fields say which file, and the secret itself is read at start.
    oauth_token_endpoint: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_client_secret_file: str | None = None
    oauth_refresh_token: str | None = field(default=None, repr=False)
    oauth_refresh_token_file: str | None = None
    oauth_scopes: tuple[str, ...] = ()
    oauth_mechanism: str = "XOAUTH2"
    listen: tuple[str, int] | None = None
    processed_folder: str = "privbot/processed"
    failed_folder: str = "privbot/failed"
    # How often processing of one message may fail before it is set aside for staff.
    max_attempts: int = 5
    # At most this many automatic replies to one address per 24 hours: the last loop guard.
    reply_cap: int = 3
    # At most this many automatic replies to one domain per 24 hours: anyone can forge From,
    # and our replies must not become a way to flood one organisation's mailboxes.
    reply_cap_per_domain: int = 500
    max_message_bytes: int = 25 * 1024 * 1024
    # The SMTP receiver's limits: connections open at once in all and from one client (an
    # IPv4 address or an IPv6 /64); more are answered 421 and closed, so idle connections
    # cannot use up the process's open files (which the database and web app need too).
    smtp_max_connections: int = 200
    smtp_max_per_client: int = 10
    # Seconds a connection may wait between commands before DATA (the DATA transfer itself
    # has the usual five minutes).
    smtp_idle_seconds: float = 30.0
    # Months until a request is due (GDPR Art. 12(3): one month from receipt).
    due_months: int = 1
    # Seconds between two IMAP polls when the server has no IDLE.
    poll_seconds: float = 30.0
    # IDLE is renewed before this many seconds (RFC 2177: servers may drop it after 30 min).
    idle_seconds: float = 25 * 60
    # Where the web app (staff queue, chat) listens.
    web: tuple[str, int] = ("127.0.0.1", 8025)
    # Signs session cookies and confirmation links; required for the web app in production.
    secret_key: str | None = None
    # The authserv-id of OUR receiving server: only its Authentication-Results are believed.
    # Unset, the SMTP receiver uses `receiver_authserv_id` for the mail it receives, and
    # nothing else (IMAP, ingest) counts as verified.
    trusted_authserv_id: str | None = None
    # DNS servers the SMTP receiver asks for SPF, DKIM and DMARC: (IP, port) pairs; empty:
    # the system's resolver. One lookup may take this many seconds (a failure is temperror).
    dns_servers: tuple[tuple[str, int], ...] = ()
    dns_timeout: float = 2.0
    # True: act automatically only for senders our trusted server verified (DMARC/DKIM/SPF
    # pass). False (default): act unless verification FAILED.
    require_verified_sender: bool = False
    # For the crash-consistency harness only: "point:probability,..." makes privbot kill
    # itself (SIGKILL) at those points. Empty, as in production, costs one dict lookup.
    crash_points: Mapping[str, float] = field(default_factory=dict)
    # First wait before a reply is retried after a temporary failure; it doubles each time.
    retry_seconds: float = 30.0
    # How long a claimed reply is reserved for its sender. Longer than any SMTP send can take
    # (the client times out at 30 s); after it, another worker may send the reply again.
    send_lease_seconds: float = 90.0
    # A reply the relay has still not taken this long after it was queued is given up at its
    # next temporary failure: `failed`, with the last error, for staff (RFC 5321 4.5.4.1
    # wants days; a relay outage over a weekend must not cost the replies).
    send_give_up_hours: float = 72.0
    # The web app's public base URL: links mailed from the chat; Secure cookies when https.
    public_url: str | None = None
    # Reverse proxies in front of the web app (networks): only from these is X-Forwarded-For
    # believed, and then only its right-most address that is not one of them.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Chat messages allowed per client: (count, per seconds).
    chat_rate: tuple[int, float] = (20, 60.0)
    # Confirmation links the chat may mail, counted in the database (shared by every process),
    # with addresses normalised (case, +tags, Gmail's dots): the chat must not be a way to
    # flood anyone's mailbox from our address. In all per hour; to one domain per hour; to
    # one address per 24 hours. 0 mails none.
    chat_links_per_hour: int = 100
    chat_links_per_domain_hour: int = 20
    chat_links_per_address_day: int = 3
    # Mail to staff (privbot/staff/notify.py): a notice for "each" new ticket that needs them,
    # a daily "digest" of them instead, or "off". Both others also mail the daily list of
    # tickets due within 5 days and overdue, at `staff_daily_hour` (UTC). To `staff_notify_to`,
    # or when that is empty to every active staff account; never to a requester, nor to us.
    staff_notify: str = "off"
    staff_notify_to: tuple[str, ...] = ()
    staff_daily_hour: int = 7
    # The staff address the CLI records as actor when --as is not given.
    staff: str | None = None
    # Folders of the data privbot runs on; default: the ones beside the code (intents/, replies/).
    intents_dir: str | None = None
    replies_dir: str | None = None
    # Where trained models are cached (pickles: only a folder no one else can write);
    # default: beside the example bank. A read-only install points it at its state folder,
    # else it trains (a minute or more) at every start.
    model_cache_dir: str | None = None
    # Retention (privbot/retention.py), in days: raw mail and reply copies of tickets closed
    # longer ago are redacted; unconfirmed chat requests (and chat client IPs) and failed
    # sign-in records older than this are deleted. A chat link lasts a day, hence >= 2.
    retain_closed_days: int = 365
    retain_chat_days: int = 7
    retain_signin_days: int = 30
    # Days a done deletion request's person keeps their data here (disputes, proof), after
    # which the retention run erases it (privbot/erasure.py), unless staff put it on hold.
    deletion_hold_days: int = 30
    # Days after staff marked a ticket's identity evidence checked before the retention run
    # removes the attachments from its mail (0: at the next run); the check itself stays.
    retain_evidence_days: int = 0
    # Operations (ops/health.py, ops/metrics.py): /metrics on the web app answers only a request
    # with this bearer token (404 unset); and/or on its own listener at this HOST:PORT.
    metrics_token: str | None = None
    metrics_listen: tuple[str, int] | None = None
    # /readyz fails when a reply has been due this long without being sent or retried: the
    # sender is not working (a relay that refuses defers it, which is not stuck).
    outbox_stuck_seconds: float = 600.0
    # "text" or "json" (one JSON object per line: time, level, logger, message, ids).
    log_format: str = "text"

    @property
    def our_addresses(self) -> frozenset[str]:
        return frozenset(a.lower() for a in (self.address, *self.aliases))

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    @property
    def receiver_authserv_id(self) -> str:
        """The authserv-id the SMTP receiver writes: the trusted one when set, else the
        name it greets clients with (the support address's domain)."""
        return (self.trusted_authserv_id or self.domain).lower()


# PRIVBOT_* variables that are not settings but are read elsewhere: accepted in the
# environment (never in the settings file), so that strict start-up does not refuse them.
OTHER_VARIABLES = frozenset({
    "PRIVBOT_STAFF_PASSWORD",  # `privbot staff add`: the new account's password
    # tests/, testing/ and bench/: the test database, soak sizes, scratch folders, screenshots
    "PRIVBOT_TEST_PG", "PRIVBOT_TEST_TMP", "PRIVBOT_BENCH_TMP", "PRIVBOT_SCREENSHOTS",
    "PRIVBOT_SCALE_MESSAGES", "PRIVBOT_FUZZ_EXAMPLES", "PRIVBOT_FLOOD",
    "PRIVBOT_CRASH_MESSAGES", "PRIVBOT_CRASH_KILLS",
})  # fmt: skip

# Where a setting's value came from, as `privbot config check` shows it.
DEFAULT, FILE, ENVIRONMENT = "default", "file", "environment"


def setting_names() -> frozenset[str]:
    """Every setting's PRIVBOT_* name: one per `Settings` field."""
    return frozenset(env_name(f.name) for f in fields(Settings))


def load_settings(
    env: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Settings:
    """Build settings from a TOML file (optional) overlaid by PRIVBOT_* environment variables.

    A name that is no setting stops it (ConfigError naming it and the closest setting): a
    typo silently ignored would leave the default in force.
    """
    return _build(read_settings(env, config_file)[0])


def read_settings(
    env: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The settings as given, by PRIVBOT_* name, and where each came from (FILE, ENVIRONMENT;
    a setting in neither is at its default). Unknown names are refused here."""
    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        raw.update(_read_toml(Path(config_file)))
        sources.update(dict.fromkeys(raw, FILE))
    env = os.environ if env is None else env
    given = {k: v for k, v in env.items() if k.startswith(PREFIX)}
    known = setting_names()
    _refuse_unknown(sorted(set(given) - known - OTHER_VARIABLES), known | OTHER_VARIABLES)
    values = {k: v for k, v in given.items() if k in known}
    raw.update(values)
    sources.update(dict.fromkeys(values, ENVIRONMENT))
    return raw, sources


def _refuse_unknown(names: list[str], known: frozenset[str], where: str = "") -> None:
    """ConfigError for the first unknown name, with the closest known one, spelt as it
    was (a TOML file's `imap_url` or an environment's `PRIVBOT_IMAP_URL`)."""
    if not names:
        return
    first = names[0]
    # Compared without the common prefix, which would make every name look alike.
    bare = {k.removeprefix(PREFIX).lower(): k for k in known}
    close = difflib.get_close_matches(first.upper().removeprefix(PREFIX).lower(), sorted(bare), n=1)
    spelt = (close[0] if not first.isupper() else bare[close[0]]) if close else ""
    hint = f"; did you mean {spelt}?" if close else " (the README's settings table has them)"
    more = f" (also unknown: {', '.join(names[1:])})" if names[1:] else ""
    raise ConfigError(f"{where}{first}: unknown setting{hint}{more}")


def _read_toml(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc}") from None
    # Accept both `database_url = ...` and `PRIVBOT_DATABASE_URL = ...`, at the top or in [privbot].
    table = data.get("privbot", data)
    where = f"--config {path}: "
    if table is not data:
        # Beside [privbot] a setting would be ignored; a mistake, so refused like a typo.
        _refuse_unknown(sorted(k for k in data if k != "privbot"), setting_names(), where)
    known = setting_names()
    unknown = []
    out: dict[str, str] = {}
    for key, value in table.items():
        name = key.upper()
        name = name if name.startswith(PREFIX) else PREFIX + name
        if name not in known or isinstance(value, dict):
            unknown.append(key)
            continue
        out[name] = _toml_value(name, value)
    _refuse_unknown(sorted(unknown), known, where)
    return out


def _toml_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ConfigError(f"{name}: unsupported value {value!r} in the config file")


def env_name(field_name: str) -> str:
    """The PRIVBOT_* variable (or TOML key, upper-cased) that sets a `Settings` field."""
    return PREFIX + {"imap": "IMAP_URL", "smtp": "SMTP_URL"}.get(field_name, field_name.upper())


def _build(raw: Mapping[str, str]) -> Settings:
    get = {k[len(PREFIX) :]: v.strip() for k, v in raw.items()}
    defaults = Settings()
    address = _address("PRIVBOT_ADDRESS", get.get("ADDRESS") or defaults.address)
    aliases = tuple(
        _address("PRIVBOT_ALIASES", a) for a in get.get("ALIASES", "").split(",") if a.strip()
    )
    oauth = _oauth(get)
    return Settings(
        database_url=_database_url(get.get("DATABASE_URL") or defaults.database_url),
        address=address,
        aliases=aliases,
        imap=_imap(get["IMAP_URL"], bool(oauth)) if get.get("IMAP_URL") else None,
        smtp=_smtp(get["SMTP_URL"], bool(oauth)) if get.get("SMTP_URL") else None,
        **oauth,
        listen=_listen(get["LISTEN"], "PRIVBOT_LISTEN") if get.get("LISTEN") else None,
        processed_folder=get.get("PROCESSED_FOLDER") or defaults.processed_folder,
        failed_folder=get.get("FAILED_FOLDER") or defaults.failed_folder,
        max_attempts=_int("MAX_ATTEMPTS", get, defaults.max_attempts, minimum=1),
        reply_cap=_int("REPLY_CAP", get, defaults.reply_cap, minimum=0),
        reply_cap_per_domain=_int(
            "REPLY_CAP_PER_DOMAIN", get, defaults.reply_cap_per_domain, minimum=0
        ),
        max_message_bytes=_int("MAX_MESSAGE_BYTES", get, defaults.max_message_bytes, minimum=1024),
        smtp_max_connections=_int(
            "SMTP_MAX_CONNECTIONS", get, defaults.smtp_max_connections, minimum=1
        ),
        smtp_max_per_client=_int(
            "SMTP_MAX_PER_CLIENT", get, defaults.smtp_max_per_client, minimum=1
        ),
        smtp_idle_seconds=_float("SMTP_IDLE_SECONDS", get, defaults.smtp_idle_seconds),
        due_months=_int("DUE_MONTHS", get, defaults.due_months, minimum=0),
        poll_seconds=_float("POLL_SECONDS", get, defaults.poll_seconds),
        idle_seconds=_float("IDLE_SECONDS", get, defaults.idle_seconds),
        web=_listen(get["WEB"], "PRIVBOT_WEB") if get.get("WEB") else defaults.web,
        secret_key=get.get("SECRET_KEY") or None,
        trusted_authserv_id=_authserv_id(get.get("TRUSTED_AUTHSERV_ID", "")),
        dns_servers=_dns_servers(get.get("DNS_SERVERS", "")),
        dns_timeout=_float("DNS_TIMEOUT", get, defaults.dns_timeout),
        require_verified_sender=_bool("REQUIRE_VERIFIED_SENDER", get),
        crash_points=_crash_points(get.get("CRASH_POINTS", "")),
        retry_seconds=_float("RETRY_SECONDS", get, defaults.retry_seconds),
        send_lease_seconds=_float("SEND_LEASE_SECONDS", get, defaults.send_lease_seconds),
        send_give_up_hours=_float("SEND_GIVE_UP_HOURS", get, defaults.send_give_up_hours),
        public_url=_public_url(get.get("PUBLIC_URL", "")),
        trusted_proxies=_networks("TRUSTED_PROXIES", get.get("TRUSTED_PROXIES", "")),
        chat_rate=_rate("CHAT_RATE", get, defaults.chat_rate),
        chat_links_per_hour=_int(
            "CHAT_LINKS_PER_HOUR", get, defaults.chat_links_per_hour, minimum=0
        ),
        chat_links_per_domain_hour=_int(
            "CHAT_LINKS_PER_DOMAIN_HOUR", get, defaults.chat_links_per_domain_hour, minimum=0
        ),
        chat_links_per_address_day=_int(
            "CHAT_LINKS_PER_ADDRESS_DAY", get, defaults.chat_links_per_address_day, minimum=0
        ),
        staff_notify=_staff_notify(get),
        staff_notify_to=_staff_notify_to(get, (address, *aliases)),
        staff_daily_hour=_hour("STAFF_DAILY_HOUR", get, defaults.staff_daily_hour),
        staff=_address("PRIVBOT_STAFF", get["STAFF"]) if get.get("STAFF") else None,
        intents_dir=_folder("INTENTS_DIR", get),
        replies_dir=_folder("REPLIES_DIR", get),
        model_cache_dir=_folder("MODEL_CACHE_DIR", get),
        retain_closed_days=_int("RETAIN_CLOSED_DAYS", get, defaults.retain_closed_days, minimum=1),
        retain_chat_days=_int("RETAIN_CHAT_DAYS", get, defaults.retain_chat_days, minimum=2),
        retain_signin_days=_int("RETAIN_SIGNIN_DAYS", get, defaults.retain_signin_days, minimum=1),
        deletion_hold_days=_int("DELETION_HOLD_DAYS", get, defaults.deletion_hold_days, minimum=1),
        retain_evidence_days=_int(
            "RETAIN_EVIDENCE_DAYS", get, defaults.retain_evidence_days, minimum=0
        ),
        metrics_token=get.get("METRICS_TOKEN") or None,
        metrics_listen=(
            _listen(get["METRICS_LISTEN"], "PRIVBOT_METRICS_LISTEN")
            if get.get("METRICS_LISTEN")
            else None
        ),
        outbox_stuck_seconds=_float("OUTBOX_STUCK_SECONDS", get, defaults.outbox_stuck_seconds),
        log_format=_choice("LOG_FORMAT", get, ("text", "json")),
    )


def _address(name: str, value: str) -> str:
    value = value.strip().lower()
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in value):
        raise ConfigError(f"{name}: not an e-mail address: {value!r}")
    return value


def _authserv_id(value: str) -> str | None:
    # RFC 8601: a single token (a host name, usually), compared without regard to case.
    if not value:
        return None
    if any(c.isspace() or c in ';()"' for c in value):
        raise ConfigError(f"PRIVBOT_TRUSTED_AUTHSERV_ID: one name, e.g. mx.example.org: {value!r}")
    return value.lower()


def _dns_servers(value: str) -> tuple[tuple[str, int], ...]:
    """`IP[:PORT],...` ([IPv6]:PORT with brackets); port 53 when left out."""
    servers = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"PRIVBOT_DNS_SERVERS: not an IP address: {item!r}") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"PRIVBOT_DNS_SERVERS: bad port in {item!r}")
        servers.append((str(ip), int(port)))
    return tuple(servers)


def _database_url(value: str) -> str:
    name = "PRIVBOT_DATABASE_URL"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(f"{name}: not a database URL: {value!r}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"{name}: only sqlite:/// and postgresql+psycopg:// are supported")
    if url.get_backend_name() == "postgresql" and url.get_driver_name() not in ("psycopg",):
        raise ConfigError(f"{name}: use the psycopg driver: postgresql+psycopg://...")
    return value


def _split_url(name: str, value: str, schemes: tuple[str, ...]) -> tuple[SplitResult, int | None]:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ConfigError(f"{name}: scheme must be one of {', '.join(schemes)}: {value!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: bad port in {_redact(value)!r}") from None
    if not parts.hostname:
        raise ConfigError(f"{name}: no host in {_redact(value)!r}")
    return parts, port


def _imap(value: str, oauth: bool = False) -> ImapSettings:
    name = "PRIVBOT_IMAP_URL"
    parts, port = _split_url(name, value, ("imap", "imaps"))
    if not parts.username or (parts.password is None and not oauth):
        raise ConfigError(
            f"{name}: needs USER:PASSWORD@ (or USER@ and PRIVBOT_OAUTH_TOKEN_ENDPOINT, for "
            f"OAuth) in {_redact(value)!r}"
        )
    ssl = parts.scheme == "imaps"
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapSettings(
        host=parts.hostname or "",
        port=port or (993 if ssl else 143),
        user=unquote(parts.username),
        password=unquote(parts.password) if parts.password is not None else None,
        folder=folder,
        ssl=ssl,
    )


def _smtp(value: str, oauth: bool = False) -> SmtpSettings:
    name = "PRIVBOT_SMTP_URL"
    parts, port = _split_url(name, value, ("smtp", "smtps"))
    if parts.username and parts.password is None and not oauth:
        raise ConfigError(
            f"{name}: a user without a password logs in with OAuth: set "
            f"PRIVBOT_OAUTH_TOKEN_ENDPOINT, or give USER:PASSWORD@ in {_redact(value)!r}"
        )
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    ssl = parts.scheme == "smtps"
    if ssl and starttls:
        raise ConfigError(f"{name}: smtps:// and ?starttls=1 exclude each other")
    return SmtpSettings(
        host=parts.hostname or "",
        port=port or (465 if ssl else 25),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ssl=ssl,
        starttls=starttls,
    )


def _listen(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _int(key: str, get: Mapping[str, str], default: int, minimum: int) -> int:
    if not get.get(key):
        return default
    try:
        value = int(get[key])
    except ValueError:
        raise ConfigError(f"{PREFIX}{key}: not a whole number: {get[key]!r}") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{key}: must be at least {minimum}")
    return value


def _crash_points(value: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        name, _, chance = item.partition(":")
        try:
            points[name] = float(chance or "1")
        except ValueError:
            raise ConfigError(f"PRIVBOT_CRASH_POINTS: bad probability in {item!r}") from None
    return points


def _bool(key: str, get: Mapping[str, str]) -> bool:
    value = get.get(key, "").lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{PREFIX}{key}: expected 1 or 0, got {get[key]!r}")


def _choice(key: str, get: Mapping[str, str], choices: tuple[str, ...]) -> str:
    """One of `choices`, the first by default."""
    value = get.get(key, "").lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{PREFIX}{key}: one of {', '.join(choices)}, got {get[key]!r}")
    return value


def _float(key: str, get: Mapping[str, str], default: float) -> float:
    if not get.get(key):
        return default
    try:
        value = float(get[key])
    except ValueError:
        raise ConfigError(f"{PREFIX}{key}: not a number: {get[key]!r}") from None
    if value <= 0:
        raise ConfigError(f"{PREFIX}{key}: must be positive")
    return value


def _redact(url: str) -> str:
    """A URL fit for an error message: the password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _networks(key: str, value: str) -> tuple[IPNetwork, ...]:
    """`IP` or `IP/PREFIX`, comma-separated; host bits set are an error, not widened."""
    networks = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise ConfigError(f"{PREFIX}{key}: not an IP address or network: {item!r}") from None
    return tuple(networks)


def _public_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"PRIVBOT_PUBLIC_URL: not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _rate(key: str, get: Mapping[str, str], default: tuple[int, float]) -> tuple[int, float]:
    value = get.get(key)
    if not value:
        return default
    count, _, window = value.partition("/")
    try:
        rate = int(count), float(window or 60)
    except ValueError:
        raise ConfigError(f"{PREFIX}{key}: expected COUNT/SECONDS, e.g. 20/60: {value!r}") from None
    if rate[0] < 1 or rate[1] <= 0:
        raise ConfigError(f"{PREFIX}{key}: COUNT and SECONDS must be positive: {value!r}")
    return rate


def _folder(key: str, get: Mapping[str, str]) -> str | None:
    value = get.get(key)
    if not value:
        return None
    if not Path(value).is_dir():
        raise ConfigError(f"{PREFIX}{key}: not a folder: {value!r}")
    return value


STAFF_NOTIFY_MODES = ("each", "digest", "off")


def _staff_notify(get: Mapping[str, str]) -> str:
    """each, digest or off; the notices link to the ticket pages, so they need a public URL."""
    mode = (get.get("STAFF_NOTIFY") or "off").lower()
    if mode not in STAFF_NOTIFY_MODES:
        raise ConfigError(f"PRIVBOT_STAFF_NOTIFY: each, digest or off, not {get['STAFF_NOTIFY']!r}")
    if mode != "off" and not get.get("PUBLIC_URL"):
        raise ConfigError("PRIVBOT_STAFF_NOTIFY: needs PRIVBOT_PUBLIC_URL (the notices link to it)")
    return mode


def _staff_notify_to(get: Mapping[str, str], ours: tuple[str, ...]) -> tuple[str, ...]:
    # A notice to our own address would come back into the mailbox as mail to handle.
    name = "PRIVBOT_STAFF_NOTIFY_TO"
    to = [_address(name, a) for a in get.get("STAFF_NOTIFY_TO", "").split(",") if a.strip()]
    for address in to:
        if address in ours:
            raise ConfigError(f"{name}: {address} is privbot's own address")
    return tuple(dict.fromkeys(to))


def _hour(key: str, get: Mapping[str, str], default: int) -> int:
    hour = _int(key, get, default, minimum=0)
    if hour > 23:
        raise ConfigError(f"{PREFIX}{key}: an hour of the day (UTC), 0 to 23")
    return hour


# -- OAuth 2.0 (privbot/mail/oauth.py) ---------------------------------------------------

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
_OAUTH_OPTIONAL = (
    "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET_FILE", "OAUTH_REFRESH_TOKEN",
    "OAUTH_REFRESH_TOKEN_FILE", "OAUTH_SCOPES", "OAUTH_MECHANISM",
)  # fmt: skip


def _oauth(get: Mapping[str, str]) -> dict[str, object]:
    """The oauth_* fields of Settings; empty without PRIVBOT_OAUTH_TOKEN_ENDPOINT."""
    if not get.get("OAUTH_TOKEN_ENDPOINT"):
        stray = next((key for key in _OAUTH_OPTIONAL if get.get(key)), None)
        if stray:
            raise ConfigError(f"{PREFIX}{stray}: OAuth is off without PRIVBOT_OAUTH_TOKEN_ENDPOINT")
        return {}
    endpoint = _token_endpoint(get["OAUTH_TOKEN_ENDPOINT"])
    if not get.get("OAUTH_CLIENT_ID"):
        raise ConfigError("PRIVBOT_OAUTH_CLIENT_ID: needed with PRIVBOT_OAUTH_TOKEN_ENDPOINT")
    secret, secret_file = _secret("OAUTH_CLIENT_SECRET", get)
    refresh, refresh_file = _secret("OAUTH_REFRESH_TOKEN", get)
    if refresh is None and secret is None:
        raise ConfigError(
            "PRIVBOT_OAUTH_CLIENT_SECRET: the client-credentials grant needs the client's "
            "secret (PRIVBOT_OAUTH_CLIENT_SECRET_FILE); or give a refresh token "
            "(PRIVBOT_OAUTH_REFRESH_TOKEN_FILE)"
        )
    mechanism = (get.get("OAUTH_MECHANISM") or OAUTH_MECHANISMS[0]).upper()
    if mechanism not in OAUTH_MECHANISMS:
        raise ConfigError(
            f"PRIVBOT_OAUTH_MECHANISM: one of {', '.join(OAUTH_MECHANISMS)}, got "
            f"{get['OAUTH_MECHANISM']!r}"
        )
    return {
        "oauth_token_endpoint": endpoint,
        "oauth_client_id": get["OAUTH_CLIENT_ID"],
        "oauth_client_secret": secret,
        "oauth_client_secret_file": secret_file,
        "oauth_refresh_token": refresh,
        "oauth_refresh_token_file": refresh_file,
        "oauth_scopes": tuple(get.get("OAUTH_SCOPES", "").replace(",", " ").split()),
        "oauth_mechanism": mechanism,
    }


def _token_endpoint(value: str) -> str:
    name = "PRIVBOT_OAUTH_TOKEN_ENDPOINT"
    parts = urlsplit(value)
    secret_params = {"client_secret", "refresh_token", "client_assertion"}
    if parts.username or parts.password or secret_params & set(parse_qs(parts.query)):
        # Not echoed: it holds a secret. URLs end up in logs and process listings.
        raise ConfigError(
            f"{name}: no credentials in the URL; the secret goes in "
            "PRIVBOT_OAUTH_CLIENT_SECRET_FILE (or PRIVBOT_OAUTH_CLIENT_SECRET)"
        )
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or (parts.scheme == "http" and not loopback)
    ):
        raise ConfigError(f"{name}: an https:// URL (http:// only on loopback), got {value!r}")
    return value


def _secret(key: str, get: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(the secret, the file it was read from) from PRIVBOT_<KEY> or PRIVBOT_<KEY>_FILE."""
    value, path = get.get(key) or None, get.get(f"{key}_FILE") or None
    if value and path:
        raise ConfigError(f"{PREFIX}{key}: give it or {PREFIX}{key}_FILE, not both")
    if path is None:
        return value, None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{PREFIX}{key}_FILE: cannot read {path!r}: {why}") from None
    if not text:
        raise ConfigError(f"{PREFIX}{key}_FILE: {path!r} is empty")
    return text, path
