"""Real servers for tests, benchmarks and demos: Dovecot, an SMTP capture relay, PostgreSQL,
pymap, an authoritative DNS server.

Plain classes with no pytest inside, so the benchmark suite and the demo can reuse them.
The pytest fixtures built on them live in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import json
import os
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import imapclient
import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from dnslib import AAAA, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from psycopg import conninfo, sql
from sqlalchemy.engine import URL

from testing.oauth import introspect

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


_PROC_NET_TCP = Path("/proc/net/tcp")


def _connects(port: int, host: str = LOCALHOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            # With nothing listening on an ephemeral-range port, the kernel can pick that very
            # port as the source port and connect the socket to itself: not a server.
            return sock.getsockname() != sock.getpeername()
    except OSError:
        return False


def port_listening(port: int, host: str = LOCALHOST) -> bool:
    """True if a socket listens on ``host:port``.

    On Linux this reads /proc/net/tcp and never connects: polling by connecting can make a
    socket connect to itself and hold the very port the server is about to bind.
    """
    try:
        lines = _PROC_NET_TCP.read_text().splitlines()[1:]
    except OSError:
        return _connects(port, host)
    address = int.from_bytes(socket.inet_aton(host), sys.byteorder)
    wanted = {f"{address:08X}:{port:04X}", f"00000000:{port:04X}"}
    return any(
        fields[3] == "0A" and fields[1] in wanted
        for fields in (line.split() for line in lines)
        if len(fields) > 3
    )


def wait_for_port(
    port: int,
    timeout: float,
    host: str = LOCALHOST,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Poll until ``host:port`` is listening; False on timeout or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if port_listening(port, host):
            return process is None or process.poll() is None
        time.sleep(0.01)
    return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log empty)"


def _new_client(host: str, port: int, user: str, password: str) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient(host, port=port, ssl=False, timeout=10)
    # Without TCP_NODELAY, APPEND stalls ~40 ms per message (Nagle plus delayed ACK).
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(user, password)
    return client


def _folder_messages(client: imapclient.IMAPClient, folder: str) -> list[bytes]:
    if not client.folder_exists(folder):
        return []
    client.select_folder(folder, readonly=True)
    uids = client.search("ALL")
    if not uids:
        return []
    fetched = client.fetch(uids, [b"BODY.PEEK[]"])
    return [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]


def _imap_url(user: str, password: str, port: int, folder: str) -> str:
    return (
        f"imap://{quote(user, safe='')}:{quote(password, safe='')}@{LOCALHOST}:{port}/"
        f"{quote(folder, safe='/')}"
    )


class _Service:
    """A server the tests start and stop, also as ``with Server() as s:``."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _ImapServer(_Service):
    """What both IMAP servers here share: the address, a logged-in client, reading a folder,
    use as a context manager. Subclasses set the attributes below and start() and stop()."""

    user: str
    password: str
    _imap_port: int
    _process: subprocess.Popen[bytes] | None

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def imap_port(self) -> int:
        return self._imap_port

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def imap_url(self, folder: str = "INBOX") -> str:
        """``imap://USER:PASSWORD@127.0.0.1:PORT/FOLDER``, user and password percent-encoded."""
        return _imap_url(self.user, self.password, self._imap_port, folder)

    def oauth_imap_url(self, folder: str = "INBOX") -> str:
        """``imap://USER@127.0.0.1:PORT/FOLDER``: a user and no password, so privbot logs in
        with OAuth (PRIVBOT_OAUTH_*)."""
        return f"imap://{quote(self.user, safe='')}@{LOCALHOST}:{self._imap_port}/" + quote(
            folder, safe="/"
        )

    def client(self) -> imapclient.IMAPClient:
        """A new IMAPClient logged in as the bot's user (TCP_NODELAY set). Caller logs out."""
        return _new_client(self.host, self._imap_port, self.user, self.password)

    @contextlib.contextmanager
    def _logged_in(self) -> Iterator[imapclient.IMAPClient]:
        """A client for one job, logged out after it (a failing logout is ignored)."""
        client = self.client()
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def folder_messages(self, folder: str = "INBOX") -> list[bytes]:
        """Raw bytes of every message in ``folder`` by UID order; [] if it does not exist."""
        with self._logged_in() as client:
            return _folder_messages(client, folder)


# --------------------------------------------------------------------------------------
# Dovecot
# --------------------------------------------------------------------------------------

_DOVECOT_CONF = """\
# Private Dovecot instance for privbot's tests. Nothing is read from /etc/dovecot.
protocols = imap lmtp
listen = {host}
base_dir = {base_dir}
state_dir = {state_dir}
log_path = {log_path}
info_log_path = {log_path}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {auth_mechanisms}
mail_location = maildir:~/Maildir
{privileges}
namespace inbox {{
  inbox = yes
  separator = /
}}

{oauth_passdb}passdb {{
  driver = passwd-file
{passwd_mechanisms}  args = scheme=PLAIN username_format=%u {users_file}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_file}
  default_fields = home={mail_dir}/%u
}}

service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{anvil_block}service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""

# Dovecot 2.3's oauth2 passdb (2.4 configures it differently): each XOAUTH2/OAUTHBEARER
# token is checked by a GET with `Authorization: Bearer` to the introspection URL, whose
# JSON must say active and name the user who logs in.
_DOVECOT_OAUTH_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {conf}
}}
"""

_DOVECOT_OAUTH2 = """\
introspection_mode = auth
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""

_ROOT_PRIVILEGES = """\
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 1
first_valid_gid = 1
"""

_ROOTLESS_PRIVILEGES = """\
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
"""


class Dovecot(_ImapServer):
    """A private Dovecot (IMAP + LMTP) instance living entirely in one directory.

    Every parent of ``directory`` must be traversable by the ``dovecot`` user when running
    as root (pytest's own tmp dirs are mode 0700: use a dir under a 0755 base instead).
    """

    START_TIMEOUT = 10.0

    def __init__(
        self,
        directory: Path,
        user: str = "support@junocloud.me",
        password: str = "secret",
        extra_config: str = "",
        oauth_introspection_url: str | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.extra_config = extra_config  # appended to dovecot.conf, e.g. to hide IDLE
        # Set: XOAUTH2 and OAUTHBEARER logins too, each token checked by Dovecot's oauth2
        # passdb at this introspection URL (testing/oauth.py's OAuthServer); passwords still
        # work, for the tests' own clients.
        self.oauth_introspection_url = oauth_introspection_url
        self.user = user
        self.password = password
        self._imap_port = free_port()
        self._lmtp_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._lmtp: smtplib.LMTP | None = None
        self._lmtp_lock = threading.Lock()
        self._configured = False
        self._started_once = False

    @staticmethod
    def available() -> str | None:
        """None if a ``dovecot`` binary exists, else why not."""
        if Dovecot._binary() is None:
            return (
                "the dovecot binary is not installed "
                "(run scripts/install-system-deps: apt-get install dovecot-imapd dovecot-lmtpd)"
            )
        return None

    @staticmethod
    def _binary() -> str | None:
        return shutil.which("dovecot") or next(
            (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)),
            None,
        )

    # -- properties -------------------------------------------------------------------

    @property
    def lmtp_port(self) -> int:
        return self._lmtp_port

    @property
    def config_path(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "dovecot.log"

    @property
    def mail_dir(self) -> Path:
        return self.directory / "mail"

    # -- lifecycle --------------------------------------------------------------------

    def _check_traversable(self) -> None:
        if os.geteuid() != 0:
            return
        for parent in self.directory.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                raise RuntimeError(
                    f"Dovecot directory {self.directory} is not reachable by the dovecot user: "
                    f"{parent} has mode {oct(mode & 0o777)} (needs o+x). Put the directory "
                    "under a 0755 base such as /tmp/privbot-tests."
                )

    def _configure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self._check_traversable()
        if self._binary() is None:
            raise RuntimeError(self.available())
        for sub in ("run", "state", "mail"):
            (self.directory / sub).mkdir(exist_ok=True)
        users_file = self.directory / "users"
        users_file.write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        users_file.chmod(0o644)
        auth_mechanisms, oauth_passdb, passwd_mechanisms = "plain login", "", ""
        if self.oauth_introspection_url:
            oauth_conf = self.directory / "oauth2.conf.ext"
            oauth_conf.write_text(_DOVECOT_OAUTH2.format(url=self.oauth_introspection_url))
            oauth_conf.chmod(0o644)
            auth_mechanisms = "plain login xoauth2 oauthbearer"
            oauth_passdb = _DOVECOT_OAUTH_PASSDB.format(conf=oauth_conf)
            # A token is never checked as a password, nor a password as a token.
            passwd_mechanisms = "  mechanisms = plain login\n"
        login_chroot = anvil_block = ""
        if os.geteuid() == 0:
            privileges = _ROOT_PRIVILEGES
            shutil.chown(self.mail_dir, "dovecot", "dovecot")
        else:
            import grp
            import pwd

            privileges = _ROOTLESS_PRIVILEGES.format(
                user=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name
            )
            login_chroot = "  chroot =\n"
            anvil_block = "service anvil {\n  chroot =\n}\n"
        self.config_path.write_text(
            _DOVECOT_CONF.format(
                host=LOCALHOST,
                base_dir=self.directory / "run",
                state_dir=self.directory / "state",
                log_path=self.log_path,
                privileges=privileges,
                login_chroot=login_chroot,
                anvil_block=anvil_block,
                users_file=users_file,
                mail_dir=self.mail_dir,
                auth_mechanisms=auth_mechanisms,
                oauth_passdb=oauth_passdb,
                passwd_mechanisms=passwd_mechanisms,
                imap_port=self._imap_port,
                lmtp_port=self._lmtp_port,
            )
            + self.extra_config
        )
        self._configured = True

    def start(self) -> None:
        """Start Dovecot and wait until IMAP accepts connections (RuntimeError after 10 s)."""
        if self.is_running:
            return
        busy = [p for p in (self._imap_port, self._lmtp_port) if port_listening(p)]
        if busy and not self._configured:
            # Someone took a free_port() pick before our first start: pick again.
            self._imap_port, self._lmtp_port = free_port(), free_port()
        elif busy:
            raise RuntimeError(
                f"Dovecot cannot start: port(s) {busy} already in use by another process "
                f"(restart() must reuse its ports). Log: {self.log_path}"
            )
        for attempt in range(1, 4):
            error = self._launch()
            if error is None:
                return
            if "Address already in use" not in error or attempt == 3:
                raise RuntimeError(error)
            # A port is held by some other socket (e.g. a client's ephemeral source port).
            if self._started_once:
                time.sleep(0.2 * attempt)  # restart(): the ports must stay; wait and retry
            else:
                self._imap_port, self._lmtp_port = free_port(), free_port()
                self._configured = False

    def _launch(self) -> str | None:
        """Run dovecot once; None when it listens, else an error text with the log tail."""
        if not self._configured:
            self._configure()
        binary = self._binary()
        assert binary is not None
        log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.directory / "dovecot.stderr", "ab") as stderr:
            self._process = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        if wait_for_port(
            self._imap_port, self.START_TIMEOUT, process=self._process
        ) and wait_for_port(self._lmtp_port, 2.0, process=self._process):
            self._started_once = True
            return None
        code = self._process.poll()
        self.stop()
        why = (
            f"exited with code {code}"
            if code is not None
            else f"not ready in {self.START_TIMEOUT} s"
        )
        new_log = (
            self.log_path.read_bytes()[log_size:].decode(errors="replace")
            if self.log_path.exists()
            else ""
        )
        return (
            f"Dovecot did not start ({why}; "
            f"imap port {self._imap_port}, lmtp port {self._lmtp_port}).\n"
            f"--- {self.log_path} ---\n{new_log[-3000:] or '(nothing new)'}\n"
            f"--- stderr ---\n{_tail(self.directory / 'dovecot.stderr')}"
        )

    def stop(self) -> None:
        """SIGKILL Dovecot's whole process group and wait for it."""
        self._close_lmtp()
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Children (imap, lmtp, auth...) are in the same group; wait until the ports are closed.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            port_listening(self._imap_port) or port_listening(self._lmtp_port)
        ):
            time.sleep(0.01)

    def restart(self) -> None:
        """Stop then start on the same ports and the same mail directory."""
        self.stop()
        self.start()

    # -- mail -------------------------------------------------------------------------

    def _close_lmtp(self) -> None:
        with self._lmtp_lock:
            lmtp, self._lmtp = self._lmtp, None
        if lmtp is not None:
            with contextlib.suppress(Exception):
                lmtp.quit()
            with contextlib.suppress(Exception):
                lmtp.close()

    def deliver(
        self, raw: bytes, rcpt: str | None = None, mail_from: str = "sender@example.org"
    ) -> None:
        """Deliver one raw message by LMTP (as an MTA would), to ``rcpt`` or the bot's user."""
        rcpt = rcpt or self.user
        with self._lmtp_lock:
            for attempt in (1, 2):
                try:
                    if self._lmtp is None:
                        self._lmtp = smtplib.LMTP(self.host, self._lmtp_port, timeout=10)
                    refused = self._lmtp.sendmail(mail_from, [rcpt], raw)
                except (smtplib.SMTPServerDisconnected, OSError) as exc:
                    with contextlib.suppress(Exception):
                        if self._lmtp is not None:
                            self._lmtp.close()
                    self._lmtp = None
                    if attempt == 2:
                        raise RuntimeError(f"LMTP delivery to {rcpt} failed: {exc}") from exc
                    continue
                if refused:
                    raise RuntimeError(f"LMTP refused {rcpt}: {refused}")
                return

    def folder_count(self, folder: str = "INBOX") -> int:
        """Number of messages in ``folder`` (0 if it does not exist)."""
        with self._logged_in() as client:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


# --------------------------------------------------------------------------------------
# SMTP capture relay
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedEnvelope:
    """One accepted SMTP transaction."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    mail_options: tuple[str, ...] = ()  # e.g. ("SMTPUTF8",)


@dataclass
class _Fault:
    code: int
    text: str
    times: int | None


class _RelayHandler:
    def __init__(self, relay: CaptureRelay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rejection = self.relay._rcpt_rejection(address)
        if rejection is not None:
            return rejection
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.relay._take_data_fault()
        if fault is not None:
            return fault
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        assert raw is not None
        self.relay._record(
            CapturedEnvelope(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                bytes(raw),
                tuple(envelope.mail_options),
            )
        )
        return "250 Message accepted for delivery"


class _OAuthRelayHandler(_RelayHandler):
    """The relay's handler when it takes OAuth: AUTH XOAUTH2 and OAUTHBEARER (aiosmtpd's
    `auth_<MECHANISM>` handler methods), each token checked at the introspection URL, as
    Gmail's and Microsoft's relays check theirs."""

    def __init__(self, relay: CaptureRelay, user: str, introspection_url: str) -> None:
        super().__init__(relay)
        self.user = user
        self.introspection_url = introspection_url

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:  # fmt: skip
        # As Gmail's and Microsoft's relays: no mail before AUTH.
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        if len(args) == 1:
            blob = await server.challenge_auth("")  # no initial response: ask for it
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        user, token = _bearer_fields(blob.decode("utf-8", "replace"), mechanism)
        loop = asyncio.get_running_loop()
        owner = await loop.run_in_executor(None, introspect, self.introspection_url, token)
        ok = owner is not None and user.lower() == owner.lower() == self.user.lower()
        with self.relay._lock:
            self.relay.auth_attempts.append((user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        # RFC 7628 3.2.2 / Google's XOAUTH2: the error as a JSON challenge; the client answers
        # (empty, or %x01), then 535.
        status = json.dumps({"status": "invalid_token", "schemes": "bearer", "scope": "mail"})
        if await server.challenge_auth(status) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)


def _bearer_fields(text: str, mechanism: str) -> tuple[str, str]:
    """(user, token) of an XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or OAUTHBEARER
    (`n,a=U,^Aauth=Bearer T^A^A`) initial response; empty strings where absent."""
    user = token = ""
    parts = text.split("\x01")
    if mechanism == "OAUTHBEARER" and parts:
        for item in parts[0].split(","):
            if item.startswith("a="):
                user = item[2:].replace("=2C", ",").replace("=3D", "=")
        parts = parts[1:]
    for item in parts:
        key, _, value = item.partition("=")
        if key == "user":
            user = value
        elif key == "auth" and value.lower().startswith("bearer "):
            token = value[7:].strip()
    return user, token


class CaptureRelay(_Service):
    """An aiosmtpd SMTP server on a free loopback port that records what it accepts.

    Fault injection: ``fail_with`` (DATA answers a code), ``reject_rcpt`` (RCPT answers a code
    for one address), ``clear_faults``. ``stop()`` then ``start()`` reuses the same port.
    If ``auth`` is given as (user, password), AUTH PLAIN/LOGIN is offered without TLS and
    checked, and ``url`` includes the credentials. ``smtputf8=False`` makes a relay that does
    not offer SMTPUTF8 (RFC 6531), as many still do not. If ``oauth`` is given as (user,
    introspection URL), only AUTH XOAUTH2 and OAUTHBEARER are offered (without TLS), each
    token checked at that URL, mail is taken only after AUTH, and ``url`` has the user alone.
    """

    def __init__(
        self,
        port: int | None = None,
        auth: tuple[str, str] | None = None,
        smtputf8: bool = True,
        oauth: tuple[str, str] | None = None,
    ) -> None:
        self._port = port or free_port()
        self.auth = auth
        self.oauth = oauth
        self.smtputf8 = smtputf8
        self._lock = threading.Condition()
        self._envelopes: list[CapturedEnvelope] = []
        self._messages: list[EmailMessage] = []
        self._data_fault: _Fault | None = None
        self._rcpt_faults: dict[str, tuple[int, str]] = {}
        self._controller: Controller | None = None
        self.auth_attempts: list[tuple[str, bool]] = []

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def url(self) -> str:
        if self.oauth is not None:
            return f"smtp://{quote(self.oauth[0], safe='')}@{LOCALHOST}:{self._port}"
        if self.auth is None:
            return f"smtp://{LOCALHOST}:{self._port}"
        user, password = (quote(x, safe="") for x in self.auth)
        return f"smtp://{user}:{password}@{LOCALHOST}:{self._port}"

    @property
    def is_running(self) -> bool:
        return self._controller is not None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = False
        login = ""
        if isinstance(data, LoginPassword) and self.auth is not None:
            login = data.login.decode("utf-8", "replace")
            ok = (login, data.password.decode("utf-8", "replace")) == self.auth
        with self._lock:
            self.auth_attempts.append((login, ok))
        # handled=False: aiosmtpd then answers 535 itself (handled=True would answer nothing).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> None:
        """Start listening (again) on ``port``."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": self.smtputf8}
        handler = _RelayHandler(self)
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if self.oauth is not None:
            handler = _OAuthRelayHandler(self, *self.oauth)
            kwargs.update(auth_require_tls=False, auth_exclude_mechanism=["PLAIN", "LOGIN"])
        controller = Controller(handler, hostname=LOCALHOST, port=self._port, **kwargs)
        last_error: Exception | None = None
        for _ in range(50):  # the port may linger briefly after stop()
            try:
                controller.start()
                break
            except Exception as exc:  # aiosmtpd wraps bind errors differently by version
                last_error = exc
                with contextlib.suppress(Exception):
                    controller.stop()
                time.sleep(0.05)
        else:
            raise RuntimeError(f"CaptureRelay could not start on port {self._port}: {last_error}")
        self._controller = controller

    def stop(self) -> None:
        """Stop listening; captured messages and faults are kept."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    # -- captured mail ----------------------------------------------------------------

    def _record(self, envelope: CapturedEnvelope) -> None:
        # Parse with LF line ends so get_content() gives "\n", as for any parsed file;
        # envelope.raw keeps the exact bytes received (CRLF).
        text = envelope.raw.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(text, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._envelopes.append(envelope)
            self._messages.append(message)
            self._lock.notify_all()

    @property
    def messages(self) -> list[EmailMessage]:
        """A snapshot of the messages accepted so far, parsed with ``email.policy.default``."""
        with self._lock:
            return list(self._messages)

    @property
    def envelopes(self) -> list[CapturedEnvelope]:
        """A snapshot of (mail_from, rcpt_tos, raw) for every accepted message."""
        with self._lock:
            return list(self._envelopes)

    def clear(self) -> None:
        """Forget the captured messages."""
        with self._lock:
            self._envelopes.clear()
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until at least ``count`` messages were captured; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    summary = [f"{m.get('To')!s} / {m.get('Subject')!s}" for m in self._messages]
                    raise AssertionError(
                        f"relay captured {len(self._messages)} message(s) within {timeout} s, "
                        f"expected at least {count}: {summary}"
                    )
                self._lock.wait(remaining)
            return list(self._messages)

    # -- fault injection --------------------------------------------------------------

    def fail_with(self, code: int, text: str = "Try again later", times: int | None = None) -> None:
        """Answer DATA with ``code text`` for the next ``times`` messages (None: until cleared)."""
        with self._lock:
            self._data_fault = _Fault(code, text, times)

    def reject_rcpt(self, address: str, code: int = 550, text: str = "No such user") -> None:
        """Answer RCPT TO for ``address`` (case-insensitive) with ``code text``."""
        with self._lock:
            self._rcpt_faults[address.lower()] = (code, text)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._data_fault = None
            self._rcpt_faults.clear()

    def _take_data_fault(self) -> str | None:
        with self._lock:
            fault = self._data_fault
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._data_fault = None
            return f"{fault.code} {fault.text}"

    def _rcpt_rejection(self, address: str) -> str | None:
        with self._lock:
            fault = self._rcpt_faults.get(address.lower())
        return None if fault is None else f"{fault[0]} {fault[1]}"


# --------------------------------------------------------------------------------------
# DNS: the test domains' SPF, DKIM and DMARC records
# --------------------------------------------------------------------------------------


class _Zone(BaseResolver):
    """dnslib resolver over a dict: (name, type) -> values. Answers are authoritative."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.server._lock:
            self.server.queries.append((name, qtype))
            values = list(self.server._records.get((name, qtype), ()))
            known = any(n == name for n, _ in self.server._records)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        for value in values:
            rdata: Any
            if qtype == "TXT":
                data = value.encode()
                # A TXT string holds at most 255 bytes; longer records are several strings.
                rdata = TXT([data[i : i + 255] for i in range(0, len(data), 255)] or [b""])
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            else:
                continue
            reply.add_answer(RR(request.q.qname, QTYPE.reverse[qtype], rdata=rdata, ttl=60))
        return reply


class _QuietDnsLog(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error", prefix=False)


class DnsServer(_Service):
    """An authoritative DNS server (dnslib, UDP) on a free loopback port, answering from the
    records a test adds: ``txt(name, text)``, ``a(name, ip)``. A name it does not know is
    NXDOMAIN; a known name without the asked type, an empty answer. ``queries`` lists every
    (name, type) asked. ``setting`` is the value for PRIVBOT_DNS_SERVERS.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self._server: DNSServer | None = None
        self._port = 0

    def txt(self, name: str, text: str) -> None:
        self._add(name, "TXT", text)

    def a(self, name: str, ip: str) -> None:
        self._add(name, "A", ip)

    def _add(self, name: str, qtype: str, value: str) -> None:
        with self._lock:
            self._records.setdefault((name.rstrip(".").lower(), qtype), []).append(value)

    def clear(self, name: str) -> None:
        """Forget every record of `name`."""
        with self._lock:
            for key in [k for k in self._records if k[0] == name.lower()]:
                del self._records[key]

    @property
    def port(self) -> int:
        return self._port

    @property
    def setting(self) -> str:
        return f"{LOCALHOST}:{self._port}"

    def start(self) -> None:
        if self._server is not None:
            return
        server = DNSServer(_Zone(self), address=LOCALHOST, port=self._port, logger=_QuietDnsLog())
        self._port = int(server.server.server_address[1])
        server.start_thread()
        self._server = server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server.server.server_close()


class SilentDns(_Service):
    """A loopback UDP port that takes DNS queries and never answers: a DNS server that is
    down or cut off, as a resolver sees it (every lookup times out)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    @property
    def setting(self) -> str:
        assert self._sock is not None
        return f"{LOCALHOST}:{self._sock.getsockname()[1]}"

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOCALHOST, 0))

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------

DEFAULT_PG = "postgresql://root@127.0.0.1:5432/test"


def _admin_conninfo() -> str:
    return os.environ.get("PRIVBOT_TEST_PG") or DEFAULT_PG


class PostgresDatabase:
    """A fresh, uniquely named database on the local PostgreSQL server, dropped by ``drop()``.

    The server is given by env ``PRIVBOT_TEST_PG`` (a libpq URL to an existing database,
    default ``postgresql://root@127.0.0.1:5432/test``).
    """

    def __init__(self, prefix: str = "privbot_test_", template: str | None = None) -> None:
        """`template`: a copy of that database (nobody may be connected to it)."""
        self.admin_conninfo = _admin_conninfo()
        self.name = f"{prefix}{secrets.token_hex(6)}"
        params = conninfo.conninfo_to_dict(self.admin_conninfo)
        self._params = {k: str(v) for k, v in params.items() if v is not None}
        self._created = False
        with self._admin() as conn:
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name))
            if template is not None:
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(create)
        self._created = True

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_conninfo, autocommit=True, connect_timeout=5)

    @staticmethod
    def available() -> str | None:
        """None if the server answers within 3 s, else why not."""
        target = _admin_conninfo()
        try:
            with psycopg.connect(target, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return (
                f"PostgreSQL is not reachable at {target} ({reason}); "
                "start it with scripts/install-system-deps or set PRIVBOT_TEST_PG"
            )
        return None

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://USER@HOST:PORT/NAME``."""
        port = self._params.get("port")
        return URL.create(
            "postgresql+psycopg",
            username=self._params.get("user"),
            password=self._params.get("password"),
            host=self._params.get("host"),
            port=int(port) if port else None,
            database=self.name,
        ).render_as_string(hide_password=False)

    @property
    def conninfo(self) -> str:
        """libpq conninfo for the new database (for psycopg directly)."""
        return conninfo.make_conninfo(self.admin_conninfo, dbname=self.name)

    def drop(self) -> None:
        """Drop the database, closing other sessions on it (idempotent)."""
        if not self._created:
            return
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self._created = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.drop()


# --------------------------------------------------------------------------------------
# pymap
# --------------------------------------------------------------------------------------


class PymapServer(_ImapServer):
    """pymap's in-memory ``dict`` backend as a subprocess: a fast second IMAP target.

    Pitfalls: one user only (several connections of that user are fine), custom keywords
    such as ``$Processed`` are silently dropped, UIDs start at 101. A user name with "@" works.
    """

    START_TIMEOUT = 10.0

    def __init__(self, user: str = "support@junocloud.me", password: str = "secret") -> None:
        self.user = user
        self.password = password
        self._imap_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = b""

    @staticmethod
    def executable() -> Path:
        return Path(sys.executable).parent / "pymap"

    @staticmethod
    def available() -> str | None:
        """None if the venv's ``pymap`` script exists, else why not."""
        path = PymapServer.executable()
        if not path.exists():
            return f"pymap is not installed next to {sys.executable} (pip install pymap)"
        return None

    def start(self) -> None:
        """Start pymap and wait until it accepts connections (RuntimeError after 10 s)."""
        if self.is_running:
            return
        reason = self.available()
        if reason:
            raise RuntimeError(reason)
        self._process = subprocess.Popen(
            [
                str(self.executable()),
                "--host",
                LOCALHOST,
                "--port",
                str(self._imap_port),
                "--no-tls",
                "dict",
                "--demo-user",
                self.user,
                "--demo-password",
                self.password,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_for_port(self._imap_port, self.START_TIMEOUT, process=self._process):
            self._process.kill()
            output, _ = self._process.communicate()
            self._process = None
            raise RuntimeError(
                f"pymap did not start on port {self._imap_port} within {self.START_TIMEOUT} s:\n"
                f"{output.decode(errors='replace')[-3000:]}"
            )

    def stop(self) -> None:
        """Kill pymap (its mail is gone: the backend is in memory)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """APPEND one raw message to ``folder`` (created if missing)."""
        with self._logged_in() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw)
