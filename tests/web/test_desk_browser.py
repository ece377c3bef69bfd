"""Issue 14, part A, in real Chromium (Playwright) at desktop width and at 390 px: the
identity evidence is opened as a download (never shown from our origin) and marked checked,
and the problems page shows what went wrong and retries it, without overflowing a phone.
Screenshots go to build/screenshots/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.models import Event, Message, Outgoing
from testing.apps import mail, make_app
from testing.servers import CaptureRelay
from tests.conftest import REPO_ROOT, unavailable
from tests.outbox.test_retry import _send_all
from tests.staff.test_evidence import PASSPORT, access_with_evidence
from tests.web.conftest import PASSWORD, STAFF, add_staff

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic"]  # fmt: skip
SHOTS = Path(os.environ.get("PRIVBOT_SCREENSHOTS", REPO_ROOT / "build" / "screenshots"))
WIDTHS = {"desktop": (1360, 900), "phone": (390, 844)}
HOSTILE_HTML = b"<html><head><title>pwned</title></head><script>alert(1)</script></html>"
LONG = "https://evil.example/" + "x" * 240  # one unbroken string, as hostile mail has


@pytest.fixture(params=list(WIDTHS))
async def page(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.async_api import async_playwright

    width, height = WIDTHS[request.param]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, accept_downloads=True
            )
            tab = await context.new_page()
            tab.set_default_timeout(15_000)
            tab.errors = []
            tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
            tab.on("dialog", lambda dialog: tab.errors.append(f"dialog: {dialog.message}"))
            tab.width_name = request.param
            tab.downloads_dir = tmp_path
            yield tab
        finally:
            await browser.close()


async def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}-{page.width_name}.png"), full_page=True)


async def _sign_in(page: Any, base: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=email]", STAFF)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/queue")


async def _overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def _events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


async def test_staff_download_the_evidence_and_mark_it_checked(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    add_staff(app)
    files = (("dni.pdf", "application/pdf", PASSPORT), ("scan.html", "text/html", HOSTILE_HTML))
    ticket_id, message_id = access_with_evidence(app, files=files)
    await _sign_in(page, base)
    await page.goto(f"{base}/tickets/{ticket_id}")
    listing = page.locator(f"ul.attachments[aria-label='Attachments of message #{message_id}']")
    text = await listing.inner_text()
    assert "dni.pdf" in text and "application/pdf · 4.8 kB" in text
    assert "scan.html" in text and f"text/html · {len(HOSTILE_HTML)} bytes" in text
    assert "2 attachments in the conversation" in await page.inner_text(".evidence")

    # The PDF: a download, with its name and bytes; the page stays where it is.
    link = listing.locator("a", has_text="dni.pdf")
    await link.scroll_into_view_if_needed()
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == "dni.pdf"
    saved = page.downloads_dir / "dni.pdf"
    await download.save_as(str(saved))
    assert saved.read_bytes() == PASSPORT
    # A stranger's HTML: saved too, never rendered as a page of the staff app.
    async with page.expect_download() as info:
        await listing.locator("a", has_text="scan.html").click()
    assert (await info.value).suggested_filename == "scan.html"
    assert page.url == f"{base}/tickets/{ticket_id}"
    assert await page.title() != "pwned" and page.errors == []
    opened = _events(app, "attachment_opened")
    assert [(e.actor, e.message_id, e.detail["filename"]) for e in opened] == [
        (STAFF, message_id, "dni.pdf"), (STAFF, message_id, "scan.html"),
    ]  # fmt: skip
    await _shot(page, "evidence-ticket")

    await page.click("button:has-text('Mark evidence checked')")
    await page.wait_for_selector("text=Evidence marked checked")
    card = await page.inner_text(".evidence")
    assert f"Checked by {STAFF}" in card and "next retention run removes the attachments" in card
    [check] = _events(app, "evidence_checked")
    assert check.actor == STAFF and check.ticket_id == ticket_id
    await _shot(page, "evidence-checked")
    assert page.errors == []


async def test_staff_see_what_went_wrong_and_retry_it(
    served: tuple[App, str], page: Any, db_url: str, relay: CaptureRelay
) -> None:
    app, base = served
    add_staff(app)
    strict = make_app(db_url, max_message_bytes="1024")  # the limit staff then raised
    try:
        big = mail(sender="Zoe Long <zoe@example.org>", subject=f"Delete my account {LONG}",
                   body="Please delete my account.\n" + "x" * 3000)  # fmt: skip
        quarantined = pipeline.receive(strict, big, source="file")
    finally:
        strict.close()
    assert quarantined.status == "quarantined"
    out = pipeline.receive(app, mail(sender="carl@example.org"), source="file")
    assert out.reply is not None
    relay.reject_rcpt("carl@example.org", 550, f"Mailbox unavailable {LONG}")
    _send_all(app, relay)

    await _sign_in(page, base)
    await page.click("nav >> text=Problems")
    await page.wait_for_url(base + "/problems")
    body = await page.inner_text("main")
    assert f"Message #{quarantined.message}" in body and "too large" in body
    assert "zoe@example.org" in body and "Delete my account https://evil.example/" in body
    assert f"Reply #{out.reply}" in body and "550 Mailbox unavailable" in body
    assert await _overflow(page) <= 0, "the problems page scrolls sideways"
    await _shot(page, "problems")

    await page.click(f"button[aria-label='Retry message #{quarantined.message}']")
    await page.wait_for_selector(f"text=Message #{quarantined.message} was put through again")
    assert "handled, ticket JC-" in await page.inner_text("[role=status]")
    assert await page.locator(f"#message-{quarantined.message}").count() == 0
    with app.sessions() as s:
        assert s.get(Message, quarantined.message).status == "handled"  # type: ignore[union-attr]

    relay.clear_faults()
    await page.click(f"button[aria-label='Retry reply #{out.reply}']")
    await page.wait_for_selector(f"text=Reply #{out.reply} is back in the outbox queue")
    with app.sessions() as s:
        assert s.get(Outgoing, out.reply).status == "pending"  # type: ignore[union-attr]
    assert await _overflow(page) <= 0
    await _shot(page, "problems-retried")
    _send_all(app, relay)
    # The failed reply, and the reply to the message handled at last.
    assert sorted(m["To"] for m in relay.wait_for(2)) == ["carl@example.org", "zoe@example.org"]
    assert [e.actor for e in _events(app, "retried")] == [STAFF]
    assert [e.actor for e in _events(app, "reply_retried")] == [STAFF]
    assert page.errors == []
