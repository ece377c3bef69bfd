"""Who the client is behind a reverse proxy: X-Forwarded-For is believed only from
PRIVBOT_TRUSTED_PROXIES, and then only its right-most address that is not one of them."""

from __future__ import annotations

import ipaddress
import json
import urllib.request
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from privbot.app import App
from privbot.config import ConfigError, Settings, load_settings
from privbot.models import Event
from privbot.web import create_app
from privbot.web.security import forwarded_client
from privbot.web.server import WebServer
from testing.apps import make_app, wait_until
from tests.web.conftest import PASSWORD, STAFF, add_staff, csrf_of

PROXIES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.0.2.1", "2001:db8::/32"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # From anyone but a trusted proxy the header is the client's own words: ignored.
        ("203.0.113.9", ["198.51.100.7"], "203.0.113.9"),
        # From a trusted proxy: the address it was reached from, the last one it appended.
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # The client wrote the left part itself: the right-most untrusted address counts.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        # A chain of proxies (each trusted): past all of them, not past the client.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7, 192.0.2.1, 10.1.2.3"], "198.51.100.7"),
        # Several header lines are one list, in order.
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7, 10.1.2.3"], "198.51.100.7"),
        # An untrusted hop in the middle of the chain stops it: what lies left is unproven.
        ("10.0.0.2", ["198.51.100.7, 203.0.113.50, 10.1.2.3"], "203.0.113.50"),
        # Ports and brackets some proxies add; IPv6.
        ("10.0.0.2", ["198.51.100.7:4711"], "198.51.100.7"),
        ("2001:db8::1", ["[2001:db8:1::5]:443, [2a00:1450::1]"], "2a00:1450::1"),
        # A dual-stack socket names an IPv4 proxy as ::ffff:a.b.c.d.
        ("::ffff:10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # Something that is no address: the last address known, never the text.
        ("10.0.0.2", ["made-up-name, 10.1.2.3"], "10.1.2.3"),
        ("10.0.0.2", ["unknown"], "10.0.0.2"),
        # No header, or only trusted hops: as far as can be seen.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["10.9.9.9, 10.1.2.3"], "10.9.9.9"),
    ],
)
def test_the_client_behind_the_proxies(peer: str, forwarded: list[str], client: str) -> None:
    assert forwarded_client(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert Settings().trusted_proxies == ()
    assert forwarded_client("127.0.0.1", ["198.51.100.7"], ()) == "127.0.0.1"


def test_the_setting_takes_addresses_and_networks() -> None:
    s = load_settings({"PRIVBOT_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    for bad in ("proxy.example", "10.0.0.1/8", "10.0.0.0/33"):  # host bits set: a typo
        with pytest.raises(ConfigError, match="PRIVBOT_TRUSTED_PROXIES"):
            load_settings({"PRIVBOT_TRUSTED_PROXIES": bad})


# -- the throttles count the client the rules above name -----------------------------------


@pytest.fixture
def proxied(sqlite_url: str) -> Iterator[App]:
    app = make_app(sqlite_url, secret_key="k", chat_rate="2/60", trusted_proxies="10.0.0.0/8")
    try:
        yield app
    finally:
        app.close()


def _chat(client: TestClient, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post("/api/v1/chat", json={"message": "cookies?"}, headers=headers).status_code


def test_a_forged_header_from_an_untrusted_peer_does_not_escape_the_chat_limit(
    proxied: App,
) -> None:
    with TestClient(create_app(proxied), client=("203.0.113.9", 40000)) as direct:
        codes = [_chat(direct, f"198.51.100.{i}") for i in range(4)]
    assert codes == [200, 200, 429, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_chat_limit(proxied: App) -> None:
    with TestClient(create_app(proxied), client=("10.0.0.2", 40000)) as proxy:
        assert [_chat(proxy, "198.51.100.7") for _ in range(3)] == [200, 200, 429]
        # Another visitor through the same proxy is not held back by the first.
        assert _chat(proxy, "198.51.100.8") == 200
        # Nor can the first get round it by writing another address to the left.
        assert _chat(proxy, "198.51.100.99, 198.51.100.7") == 429


def _sign_in(client: TestClient, password: str, forwarded: str) -> int:
    form = client.get("/login")
    return client.post(
        "/login",
        data={"email": STAFF, "password": password, "csrf": csrf_of(form.text)},
        headers={"X-Forwarded-For": forwarded},
        follow_redirects=False,
    ).status_code


def test_sign_in_slow_down_and_audit_count_the_forwarded_client(proxied: App) -> None:
    add_staff(proxied)
    web = create_app(proxied)
    with (
        TestClient(web, client=("10.0.0.2", 40000)) as guesser,
        TestClient(web, client=("10.0.0.2", 40001)) as own,  # the same proxy, her browser
    ):
        # Through two proxies; the guesser writes a made-up address of its own in front.
        attacker = "6.6.6.6, 203.0.113.9, 10.7.7.7"
        assert [_sign_in(guesser, "guess", attacker) for _ in range(6)] == [401] * 5 + [429]
        assert _sign_in(own, PASSWORD, "198.51.100.7") == 303  # staff elsewhere: not held
        # Changing the made-up part changes nothing: the proxies' own entry still counts.
        assert _sign_in(guesser, PASSWORD, "1.1.1.1, 203.0.113.9, 10.7.7.7") == 429
    with proxied.sessions() as s:
        clients = {e.detail["client"] for e in s.scalars(select(Event).where(
            Event.kind == "login_failed"))}  # fmt: skip
    assert clients == {"203.0.113.9"}


def test_a_forged_header_does_not_dodge_the_sign_in_slow_down(proxied: App) -> None:
    add_staff(proxied)
    with TestClient(create_app(proxied), client=("203.0.113.9", 40000)) as direct:
        codes = [_sign_in(direct, "guess", f"198.51.100.{i}") for i in range(6)]
    assert codes == [401] * 5 + [429]


def test_the_served_app_ignores_the_header_from_loopback_unless_trusted(sqlite_url: str) -> None:
    """uvicorn on its own believes X-Forwarded-For from 127.0.0.1: it must not, unasked."""
    app = make_app(sqlite_url, secret_key="k", chat_rate="2/60")
    server = WebServer(app, "127.0.0.1", 0).start()
    try:
        wait_until(lambda: server.started, what="the web app to start")

        def chat(forwarded: str) -> int:
            request = urllib.request.Request(
                f"{server.url}/api/v1/chat",
                data=json.dumps({"message": "cookies?"}).encode(),
                headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert [chat(f"198.51.100.{i}") for i in range(3)] == [200, 200, 429]
    finally:
        server.stop()
        app.close()
