"""End to end in a real browser: Debian's Chromium driven by Playwright (async API).

The app runs under uvicorn on a free loopback port, on a real SQLite database, exactly as
`privbot serve` runs it. Screenshots of the queue, a ticket and the chat go to
build/screenshots/ (gitignored) for people to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.models import Outgoing, Ticket, utcnow
from privbot.tickets import open_ticket
from privbot.web.server import WebServer
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port
from tests.conftest import REPO_ROOT, unavailable
from tests.web.conftest import PASSWORD, STAFF, add_staff

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
SHOTS = Path(os.environ.get("PRIVBOT_SCREENSHOTS", REPO_ROOT / "build" / "screenshots"))


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[App, str]]:
    port = free_port()
    app = make_app(sqlite_url, secret_key="browser-secret", web=f"127.0.0.1:{port}")
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn started")
        yield app, server.url
    finally:
        server.stop()
        app.close()


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        unavailable(
            f"{CHROMIUM} is missing: install Debian's chromium (scripts/install-system-deps)"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 900})
            tab = await context.new_page()
            tab.set_default_timeout(10_000)
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
            tab.errors = errors
            yield tab
        finally:
            await browser.close()


async def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def _sign_in(page: Any, base: str) -> None:
    await page.goto(base + "/")
    assert "/login" in page.url
    await page.fill("input[name=email]", STAFF)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/queue")


def _seed_queue(app: App) -> int:
    """A realistic queue: some overdue, some due soon, several languages and types."""
    people = [
        (
            "Max Weber <max.weber@example.de>",
            "Auskunft über meine Daten",
            "Guten Tag, bitte senden Sie mir eine Kopie aller Daten, die Sie über mich speichern.",
        ),
        (
            "Claire <claire.dubois@example.fr>",
            "Suppression de mon compte",
            "Bonjour, je vous prie de supprimer mon compte et toutes mes données personnelles.",
        ),
        (
            "Lena Hart <lena.hart@example.org>",
            "Please correct my address",
            "Hello, my postal address is wrong. Please change it to 12 Green Lane, Leeds.",
        ),
    ]
    target = 0
    for sender, subject, body in people:
        out = pipeline.receive(app, mail(sender=sender, subject=subject, body=body), source="file")
        target = target or (out.ticket or 0)
    with app.sessions.begin() as session:
        for i, (who, subject, kind, days) in enumerate(
            [
                ("sam@example.com", "Copy of my personal data", "access", -4),
                ("ana@example.es", "Derecho de acceso", "access", 1),
                ("joe@example.org", "Do you sell my data?", "question", 9),
                ("kim@example.nl", "Verwijder mijn gegevens", "deletion", 16),
                ("li@example.org", "Wrong birthday on file", "correction", 23),
            ]
        ):
            t = open_ticket(
                session,
                requester=who,
                subject=subject,
                received_at=utcnow(),
                due_months=1,
                type=kind,
                status="awaiting_identity" if kind == "access" else "open",
                language=["en", "es", "en", "nl", "en"][i],
            )
            # Noon of the due day: "days left" counts calendar days, whatever the hour.
            t.due_at = utcnow().replace(hour=12, minute=0) + timedelta(days=days)
    return target


async def test_staff_member_logs_in_finds_assigns_replies_and_closes_a_ticket(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    add_staff(app)
    target = _seed_queue(app)
    await _sign_in(page, base)

    assert await page.locator("table.queue tbody tr").count() == 8
    assert await page.locator("tr.overdue").count() == 1
    await _shot(page, "queue")

    # Find it by the requester's address, open it.
    await page.fill("input[name=q]", "max.weber@")
    await page.click("form.search button[type=submit]")
    await page.wait_for_url("**/queue?q=max.weber%40")
    assert await page.locator("table.queue tbody tr").count() == 1
    await page.click(f"a[href='/tickets/{target}'] >> nth=0")
    await page.wait_for_url(f"{base}/tickets/{target}")
    assert "Auskunft über meine Daten" in await page.inner_text("h1")

    await page.click("button:has-text('Assign to me')")
    await page.wait_for_selector("text=Assignment saved.")

    await page.select_option("select[name=template]", "identity_needed")
    await page.click("button:has-text('Load template')")  # fills the box in place
    from playwright.async_api import expect

    await expect(page.locator("textarea[name=body]")).to_have_value(re.compile("Max Weber"))
    draft = await page.input_value("textarea[name=body]")
    # The ticket's language (German), with his mail quoted below.
    assert "Guten Tag Max Weber" in draft and "Nachweis Ihrer Identität" in draft
    assert "> Guten Tag, bitte senden Sie mir eine Kopie" in draft
    await page.fill("textarea[name=body]", draft.replace("[Your answer here.]", ""))
    await page.click("button:has-text('Preview')")
    await page.wait_for_selector("text=Preview: exactly what will be sent")
    await _shot(page, "ticket")
    await page.select_option("select[name=then_status]", "done")
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("text=Reply queued in the outbox.")
    assert "Closed" in await page.inner_text(".due-box")

    with app.sessions() as session:
        ticket = session.get(Ticket, target)
        assert ticket is not None
        assert (ticket.assignee, ticket.status) == (STAFF, "done")
        staff_reply = session.scalar(select(Outgoing).where(Outgoing.kind == "staff"))
        assert staff_reply is not None and staff_reply.to_addr == "max.weber@example.de"
    assert page.errors == []


async def test_visitor_asks_about_cookies_and_gets_the_cookies_section(
    served: tuple[App, str], page: Any
) -> None:
    _app, base = served
    await page.goto(base + "/chat")
    await page.fill("#message", "Do you use cookies on your website?")
    await page.click("button:has-text('Send')")
    answer = page.locator(".msg.bot").nth(1)
    await answer.wait_for()
    assert "Privacy policy · Cookies" in await answer.text_content()
    assert "persistent" in await answer.locator("blockquote").first.inner_text()
    assert "Cited: Cookies" in await answer.inner_text()

    await page.fill("#message", "Please unsubscribe me from all marketing emails.")
    await page.keyboard.press("Enter")
    await page.locator(".msg.bot").nth(2).wait_for()
    assert (
        "e-mail address of your JunoCloud account"
        in await page.locator(".msg.bot").nth(2).inner_text()
    )
    await _shot(page, "chat")

    await page.fill("#message", "")
    await page.evaluate("document.getElementById('message').removeAttribute('required')")
    await page.fill("#message", "x" * 10)
    await page.evaluate("document.getElementById('message').value = ' '.repeat(3)")
    await page.click("button:has-text('Send')")  # empty after trimming: nothing is sent
    assert await page.locator(".msg").count() == 5
    assert page.errors == []


async def test_script_and_html_in_a_message_show_as_inert_text(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    add_staff(app)
    subject = "<script>window.__pwned=1;alert('subject')</script><b>Bold</b> request"
    body = (
        'Hello <img src=x onerror="window.__pwned=2"> please '
        '<a href="javascript:alert(1)">click</a>\n<script>window.__pwned=3</script>\n'
        '<iframe src="https://evil.example"></iframe> delete my account.'
    )
    out = pipeline.receive(
        app, mail(sender="mallory@example.org", subject=subject, body=body), source="file"
    )
    html_mail = (
        b"From: mallory@example.org\r\nTo: support@junocloud.me\r\n"
        b"Subject: Re: x [JC-" + str(out.ticket).encode() + b"]\r\n"
        b"Message-ID: <html-payload@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Again <script>window.__pwned=4</script><img src=x onerror=window.__pwned=5></p>\r\n"
    )
    pipeline.receive(app, html_mail, source="file")
    await _sign_in(page, base)

    queue_text = await page.inner_text("table.queue")
    assert "<script>window.__pwned=1;alert('subject')</script><b>Bold</b> request" in queue_text
    await page.click(f"a[href='/tickets/{out.ticket}'] >> nth=0")
    await page.wait_for_url(f"{base}/tickets/{out.ticket}")
    thread = await page.inner_text("section[aria-labelledby=thread-h]")
    assert '<img src=x onerror="window.__pwned=2">' in thread
    assert "<script>window.__pwned=3</script>" in thread
    # No element came from the mail: no script, image, link or frame in the thread.
    for tag in ("script", "img", "iframe", "a[href^=javascript]", "b"):
        assert await page.locator(f"section[aria-labelledby=thread-h] {tag}").count() == 0, tag
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("h1 b").count() == 0
    await _shot(page, "ticket-payload")
    assert page.errors == []
