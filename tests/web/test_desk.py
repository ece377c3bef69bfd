"""The staff desk in real Chromium, at desktop width and at 390 px (issue 14, part C).

The audit trail as sentences, the extend box, one conversation, a reply in one step, the
pages at phone width, the chat's long strings and wrapped headings, HEAD and the favicon.
The app runs under uvicorn on a real SQLite database, as in test_browser.py; each test
writes its screenshots to build/screenshots/desk-*.png.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.models import Outgoing, Suppression, utcnow
from privbot.staff import actions
from privbot.web.server import WebServer
from testing.apps import mail, make_app, wait_until
from testing.servers import free_port
from tests.conftest import unavailable
from tests.web.conftest import STAFF, add_staff
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS, _sign_in

WIDTHS = {"desktop": (1360, 900), "phone": (390, 844)}
BEA = "bea@junocloud.me"
CONTACTS = "Using your personal information and information about your contacts"
# Whether an element is wholly inside the window.
IN_VIEW = (
    "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight }"
)
LONG_URL = "https://example.org/" + "a1b2c3d4e5" * 40 + "?tracking=" + "x" * 120


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[App, str]]:
    port = free_port()
    app = make_app(sqlite_url, secret_key="desk-secret", web=f"127.0.0.1:{port}")
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn started")
        add_staff(app)
        add_staff(app, BEA)
        yield app, server.url
    finally:
        server.stop()
        app.close()


@pytest.fixture(params=sorted(WIDTHS))
def width(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _browser_page(width: str, javascript: bool = True) -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        unavailable(
            f"{CHROMIUM} is missing: install Debian's chromium (scripts/install-system-deps)"
        )
    from playwright.async_api import async_playwright

    w, h = WIDTHS[width]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": w, "height": h}, java_script_enabled=javascript
            )
            tab = await context.new_page()
            tab.set_default_timeout(10_000)
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.errors = errors
            tab.width_name = width
            yield tab
        finally:
            await browser.close()


@pytest.fixture
async def page(width: str) -> AsyncIterator[Any]:
    async for tab in _browser_page(width):
        yield tab


async def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"desk-c-{name}-{page.width_name}.png"), full_page=True)


async def _overflow(page: Any) -> int:
    """How far the page is wider than the window (0: no horizontal scrolling)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def _receive(app: App, body: str, subject: str = "Auskunft über meine Daten",
             sender: str = "Max Weber <max.weber@example.de>") -> Any:  # fmt: skip
    return pipeline.receive(app, mail(sender=sender, subject=subject, body=body), source="file")


def _ticket(app: App, followups: int = 0) -> int:
    """A German access request (the ticket's language: de), worked by staff, with
    `followups` more mails from the requester (each a long paragraph)."""
    out = _receive(
        app, "Guten Tag, bitte senden Sie mir eine Kopie aller Daten, die Sie über mich speichern."
    )
    tid = out.ticket
    assert tid is not None
    for n in range(followups):
        _receive(
            app,
            f"Nachricht {n + 1}: " + "Ich warte noch immer auf meine Daten. " * 25,
            subject=f"Re: Auskunft über meine Daten [JC-{tid}]",
        )
    actions.assign(app, tid, BEA, actor=STAFF)
    actions.set_language(app, tid, "fr", actor=STAFF)
    actions.set_language(app, tid, "de", actor=STAFF)
    actions.apply_opt_out(app, tid, "max.weber@example.de", ["marketing_email"], actor=STAFF)
    actions.add_note(app, tid, "Rang him: he will send his ID card.", actor=STAFF)
    return tid


# -- 1. the audit trail in sentences ---------------------------------------------------------


async def test_the_audit_trail_reads_as_sentences_on_the_ticket_and_the_audit_log(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app)
    await _sign_in(page, base)
    await page.goto(f"{base}/tickets/{tid}")
    trail = await page.inner_text("section[aria-labelledby=audit-h]")
    assert "Opted out of: marketing e-mails for max.weber@example.de." in trail
    assert f"Assigned to {BEA} (was nobody)." in trail
    assert "Language set to German (was French)." in trail
    assert "Read as a copy of their data" in trail
    await _shot(page, "audit-trail")
    await page.goto(f"{base}/audit")
    log = await page.inner_text("table.audit")
    assert "Language set to German (was French)." in log
    assert "Opted out of: marketing e-mails for max.weber@example.de." in log
    for text in (trail, log):
        for token in ("['", "[]", "None", "True", "False", "{"):
            assert token not in text, token
    assert await _overflow(page) == 0
    await _shot(page, "audit-log")
    assert page.errors == []


# -- 2. the extend box ------------------------------------------------------------------------


async def test_the_extend_box_offers_only_the_months_left(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app)
    await _sign_in(page, base)
    await page.goto(f"{base}/tickets/{tid}")
    months = page.locator("select[name=months] option")
    assert await months.all_inner_texts() == ["by 1 month", "by 2 months"]

    await page.select_option("select[name=months]", "1")
    await page.fill("textarea[name=reason]", "We must collect your data from our archives.")
    await page.click("button:has-text('Extend and tell the requester')")
    await page.wait_for_selector("text=Deadline extended;")
    assert await months.all_inner_texts() == ["by 1 month"]
    assert "1 already used, 1 left" in await page.inner_text("#actions")
    await _shot(page, "extend-one-left")

    await page.fill("textarea[name=reason]", "Still gathering.")
    await page.click("button:has-text('Extend and tell the requester')")
    await page.wait_for_selector("text=Deadline extended;")
    assert await page.locator("select[name=months]").count() == 0
    assert "cannot be extended further" in await page.inner_text("#actions")
    await _shot(page, "extend-none-left")
    assert page.errors == []


# -- 3. one conversation ----------------------------------------------------------------------


async def test_notes_stand_in_the_conversation_and_message_references_are_links(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app, followups=4)
    await _sign_in(page, base)
    await page.goto(f"{base}/tickets/{tid}")

    thread = page.locator("section[aria-labelledby=thread-h]")
    await thread.locator("details.older > summary").click()
    kinds = await thread.locator("article.mail").evaluate_all(
        "els => els.map(e => e.classList.contains('note') ? 'note' : e.id.split('-')[0])"
    )
    # The note (written last) closes the conversation; the mails stand in time order.
    assert kinds[-1] == "note" and kinds.count("note") == 1 and kinds[0] == "msg"
    note = thread.locator("article.mail.note")
    assert "internal" in (await note.locator(".badge").inner_text()).lower()
    assert "Rang him: he will send his ID card." in await note.inner_text()

    # Times: relative, with the absolute time on hover.
    stamp = note.locator("time")
    assert re.fullmatch(r"just now|\d+ min ago", await stamp.inner_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", await stamp.get_attribute("title"))

    # "msg #N" in the trail is a link to that message, even one folded away.
    await page.reload()
    first = int((await thread.locator("article.mail.in").first.get_attribute("id"))[4:])
    link = page.locator(f"section[aria-labelledby=audit-h] a[href='#msg-{first}']").first
    assert await link.inner_text() == f"msg #{first}"
    await link.click()
    target = page.locator(f"#msg-{first}")
    await target.wait_for(state="visible")
    assert await target.evaluate(IN_VIEW)
    await _shot(page, "conversation")

    # And from the audit log, to the ticket's message.
    await page.goto(f"{base}/audit?ticket=JC-{tid}")
    await page.click(f"a[href='/tickets/{tid}#msg-{first}'] >> nth=0")
    await page.wait_for_url(f"{base}/tickets/{tid}#msg-{first}")
    await page.locator(f"#msg-{first}").wait_for(state="visible")
    assert page.errors == []


# -- 4. a reply in one step -------------------------------------------------------------------


async def test_a_reply_in_one_step_template_in_place_preview_without_reload_send(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app)
    await _sign_in(page, base)
    await page.goto(f"{base}/tickets/{tid}")
    await page.evaluate("window.__same_page = 1")  # gone if anything reloads the page

    await page.select_option("select[name=template]", "identity_needed")
    box = page.locator("textarea[name=body]")
    from playwright.async_api import expect

    await expect(box).to_have_value(re.compile("Guten Tag"))  # filled in place, no reload
    draft = await box.input_value()
    assert draft.startswith("Guten Tag Max Weber,")  # the ticket's language: German
    quote = draft.split("\n\n")[-1]
    assert "Max Weber <max.weber@example.de>:\n> Guten Tag, bitte senden Sie mir" in quote

    await box.fill(draft.replace("Guten Tag Max Weber,", "Guten Tag Herr Weber,", 1))
    await page.click("button:has-text('Preview')")
    preview = page.locator("#reply-preview")
    await preview.wait_for(state="visible")
    assert f"Re: Auskunft über meine Daten [JC-{tid}]" in await preview.inner_text()
    assert "Guten Tag Herr Weber," in await preview.locator("pre").inner_text()
    assert "max.weber@example.de" in await preview.inner_text()
    assert await page.evaluate("window.__same_page") == 1
    assert page.url == f"{base}/tickets/{tid}"
    await _shot(page, "reply-preview")

    await page.select_option("select[name=then_status]", "in_progress")
    await page.click("button:has-text('Send reply')")
    await page.wait_for_selector("text=Reply queued in the outbox.")
    with app.sessions() as session:
        staff_reply = session.scalar(select(Outgoing).where(Outgoing.kind == "staff"))
        assert staff_reply is not None
        sent = email.message_from_bytes(staff_reply.raw, policy=email.policy.default)
    assert isinstance(sent, EmailMessage)
    text = sent.get_body(("plain",))
    assert text is not None and "Guten Tag Herr Weber," in text.get_content()
    assert "in progress" in await page.inner_text(".meta")
    assert page.errors == []


async def test_the_reply_forms_still_work_without_javascript(
    served: tuple[App, str], width: str
) -> None:
    app, base = served
    tid = _ticket(app)
    async for page in _browser_page(width, javascript=False):
        await _sign_in(page, base)
        await page.goto(f"{base}/tickets/{tid}")
        await page.select_option("select[name=template]", "request_done")
        await page.click("button:has-text('Load template')")
        await page.wait_for_url(f"**/tickets/{tid}?template=request_done*")
        draft = await page.input_value("textarea[name=body]")
        assert "> Guten Tag, bitte senden Sie mir" in draft
        await page.click("button:has-text('Preview')")
        await page.wait_for_url(f"{base}/tickets/{tid}/reply/preview")
        assert await page.locator("#reply-preview").is_visible()
        await page.click("button:has-text('Send reply')")
        await page.wait_for_selector("text=Reply queued in the outbox.")
        await _shot(page, "reply-no-script")
    with app.sessions() as session:
        assert session.scalar(select(Outgoing).where(Outgoing.kind == "staff")) is not None


# -- 5. phone width ---------------------------------------------------------------------------


async def test_ticket_opt_outs_and_audit_fit_the_width_and_the_actions_stay_reachable(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app, followups=6)
    with app.sessions.begin() as session:
        for n in range(25):
            address = f"a-rather-long-mailbox-name-number-{n}@marketing-preferences.example.org"
            session.add(Suppression(address=address, scope="third_party_marketing",
                                    created_by=STAFF, created_at=utcnow()))  # fmt: skip
    phone = page.width_name == "phone"
    await _sign_in(page, base)

    await page.goto(f"{base}/tickets/{tid}")
    assert await _overflow(page) == 0
    due = page.locator(".due-box")
    box = await due.bounding_box()
    assert (
        box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTHS[page.width_name][0]
    )
    assert await due.evaluate("e => e.scrollWidth <= e.clientWidth")
    # The thread shows its last messages; the rest behind "show all".
    summary = page.locator("details.older > summary")
    total = await page.locator("section[aria-labelledby=thread-h] article.mail").count()
    assert re.search(rf"Show all {total} messages", await summary.inner_text())
    visible = await page.locator("section[aria-labelledby=thread-h] article.mail:visible").count()
    assert visible == 3
    await _shot(page, "ticket-folded")
    if phone:
        # The actions are one tap away from the top, not below the thread.
        jump = page.locator("nav.jump a[href='#actions']")
        assert (await jump.bounding_box() or {"y": 9999})["y"] < 844
        await jump.click()
        assert await page.locator("button:has-text('Assign to me')").is_visible()
        assert await page.locator("button:has-text('Assign to me')").evaluate(IN_VIEW)
    else:
        assert await page.locator("nav.jump").is_hidden()
        assert await page.locator("#actions").evaluate(
            "e => e.getBoundingClientRect().top < innerHeight"
        )
    await summary.click()
    shown = await page.locator("section[aria-labelledby=thread-h] article.mail:visible").count()
    assert shown == total
    assert await _overflow(page) == 0
    await _shot(page, "ticket-all")

    await page.goto(f"{base}/suppressions")
    assert await page.locator("table.optouts tbody tr").count() >= 25
    assert await _overflow(page) == 0
    await _shot(page, "suppressions")
    await page.goto(f"{base}/audit")
    assert await _overflow(page) == 0
    await _shot(page, "audit")
    assert page.errors == []


# -- 6. the chat ------------------------------------------------------------------------------


async def test_the_chat_wraps_long_strings_and_shows_wrapped_headings_as_headings(
    served: tuple[App, str], page: Any
) -> None:
    _app, base = served
    await page.goto(base + "/chat")
    await page.fill("#message", f"Is this link from you? {LONG_URL}")
    await page.click("button:has-text('Send')")
    await page.locator(".msg.bot").nth(1).wait_for()
    mine = page.locator(".msg.me").first
    assert await mine.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert await _overflow(page) == 0

    async with page.expect_response("**/api/v1/chat") as answered:
        await page.fill("#message", "Do you send newsletters to my contacts?")
        await page.keyboard.press("Enter")
    data = await (await answered.value).json()
    assert CONTACTS in data["sections"]
    # The reply is mail text: that heading is wrapped onto two lines there.
    assert f'section "{CONTACTS}":' not in data["reply"]
    answer = page.locator(".msg.bot").nth(2)
    await answer.wait_for()
    headings = await answer.locator(".cite").all_inner_texts()
    assert f"Privacy policy · {CONTACTS}" in headings
    assert len(headings) == len(data["sections"])
    assert "Our privacy policy, section" not in await answer.inner_text()

    async with page.expect_response("**/api/v1/chat") as answered:
        await page.fill("#message", "Schicken Sie Newsletter an meine Kontakte?")
        await page.keyboard.press("Enter")
    data = await (await answered.value).json()
    german = page.locator(".msg.bot").nth(3)
    await german.wait_for()
    assert f"Privacy policy · {CONTACTS}" in await german.locator(".cite").all_inner_texts()
    assert "unserer Datenschutzerklärung:" not in await german.inner_text()
    assert await _overflow(page) == 0
    await _shot(page, "chat")
    assert page.errors == []


# -- 7. HEAD and the favicon ------------------------------------------------------------------


async def test_head_answers_wherever_get_does_and_there_is_a_favicon(
    served: tuple[App, str], page: Any
) -> None:
    app, base = served
    tid = _ticket(app)
    await page.goto(base + "/chat")
    icon = await page.get_attribute("link[rel=icon]", "href")
    assert icon == "/static/favicon.svg"
    for path in ("/login", "/chat", icon, "/favicon.ico", "/static/style.css"):
        head = await page.request.fetch(base + path, method="HEAD")
        get = await page.request.get(base + path)
        assert head.status == get.status == 200, path
        assert await head.body() == b""
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
    favicon = await page.request.get(base + "/favicon.ico")
    assert favicon.headers["content-type"].startswith("image/svg+xml")
    assert (await favicon.body()).startswith(b"<svg")
    await _sign_in(page, base)
    for path in ("/queue", f"/tickets/{tid}", "/suppressions", "/audit"):
        head = await page.request.fetch(base + path, method="HEAD")
        assert head.status == 200 and await head.body() == b"", path
    refused = await page.request.fetch(f"{base}/tickets/{tid}/note", method="HEAD")
    assert refused.status == 405  # no GET there either
    await page.goto(base + "/favicon.ico")
    await page.set_viewport_size({"width": 64, "height": 64})  # the icon, as a tab shows it
    await page.screenshot(path=str(SHOTS / f"desk-c-favicon-{page.width_name}.png"))
