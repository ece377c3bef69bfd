"""The desk in real Chromium, at desktop width and at 390 px: the queue's saved views, sorts and
"requester replied"; search that finds a closed ticket by a word of its mail and by JC-7;
/tickets/JC-7; the friendly 404. Nothing may overflow the phone's width."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from privbot import pipeline
from privbot.app import App
from privbot.models import Ticket, utcnow
from privbot.staff import actions
from testing.apps import mail
from tests.conftest import unavailable
from tests.web.conftest import STAFF, add_staff
from tests.web.test_browser import ARGS, CHROMIUM, _shot, _sign_in, served  # noqa: F401

WIDTHS = {"desktop": 1360, "phone": 390}


@pytest.fixture(params=list(WIDTHS))
async def tab(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A Chromium tab at desktop width or at 390 px (a phone), with `.width` and `.name`."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.async_api import async_playwright

    width = WIDTHS[request.param]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": 900 if width > 500 else 844},
                is_mobile=width < 500,
                has_touch=width < 500,
            )
            page = await context.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.errors, page.width, page.name = errors, width, request.param
            yield page
        finally:
            await browser.close()


async def _fits(page: Any) -> None:
    """The page is no wider than the window: nothing to scroll sideways."""
    wide = await page.evaluate("document.documentElement.scrollWidth")
    assert wide <= page.width, f"{page.url} is {wide} px wide at {page.width} px"


def _receive(app: App, sender: str, subject: str, body: str, message_id: str) -> int:
    raw = mail(sender=sender, subject=subject, body=body, message_id=message_id)
    out = pipeline.receive(app, raw, source="file")
    assert out.ticket is not None, out
    return out.ticket


def _seed(app: App) -> dict[str, int]:
    """Tickets due at every distance, one assigned, one the requester wrote to again, one
    closed with a telling word in its mail."""
    add_staff(app)
    ids = {
        "late": _receive(app, "Sam Lee <sam@example.com>", "Copy of my data",
                         "Please send me a copy of my personal data.", "late@x"),
        "today": _receive(app, "ana@example.es", "Borrar mi cuenta",
                          "Por favor, borren mi cuenta y mis datos.", "today@x"),
        "week": _receive(app, "joe@example.org", "Delete my account",
                         "Please delete my account and all data.", "week@x"),
        "later": _receive(app, "kim@example.nl", "Verwijder mijn gegevens",
                          "Verwijder alstublieft mijn account en gegevens.", "later@x"),
        "closed": _receive(app, "Jana Novak <jana.novak@example.cz>", "Access request",
                           "Please send me a copy of my data. My customer number is "
                           "ZEPHYRINE-4471 and I attach my passport.", "closed@x"),
    }  # fmt: skip
    noon = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    with app.sessions.begin() as session:
        for name, days in (("late", -3), ("today", 0), ("week", 5), ("later", 20), ("closed", 2)):
            session.execute(
                update(Ticket).where(Ticket.id == ids[name])
                .values(due_at=noon + timedelta(days=days))
            )  # fmt: skip
    actions.assign(app, ids["week"], STAFF, actor=STAFF)
    actions.set_status(app, ids["closed"], "done", actor=STAFF)
    # Sam writes again after privbot's answer: waiting for a person now.
    follow = mail(sender="sam@example.com", subject="Re: Copy of my data", body="Any news?",
                  headers={"In-Reply-To": "<late@x>"})  # fmt: skip
    assert pipeline.receive(app, follow, source="file").ticket == ids["late"]
    return ids


def _refs(ids: dict[str, int], *names: str) -> list[str]:
    return [f"JC-{ids[n]}" for n in names]


async def _rows(page: Any) -> list[str]:
    return [r.strip() for r in await page.locator("table.queue td.ref").all_inner_texts()]


@pytest.mark.timeout(120)
async def test_queue_saved_views_sorts_and_who_moved_last(
    served: tuple[App, str],  # noqa: F811
    tab: Any,
) -> None:
    app, base = served
    ids = _seed(app)
    await _sign_in(tab, base)

    # Open tickets, due first; the closed one is not among them.
    assert await _rows(tab) == _refs(ids, "late", "today", "week", "later")
    assert "Open tickets" in await tab.inner_text("h1")
    replied = tab.locator("tr.replied")
    assert await replied.count() == 1
    assert f"JC-{ids['late']}" in await replied.inner_text()
    assert "requester replied" in await replied.inner_text()
    assert await tab.locator("td.when.updated time").count() == 4  # the "updated" column
    await _fits(tab)
    await _shot(tab, f"desk-queue-{tab.name}")

    views = tab.locator("nav.views")
    for label, expected in (
        ("Overdue", ["late"]),
        ("Due this week", ["today", "week"]),
        ("Mine", ["week"]),
        ("Unassigned", ["late", "today", "later"]),
    ):
        await views.locator(f"a:has-text('{label}')").click()
        await tab.wait_for_load_state()
        assert await _rows(tab) == _refs(ids, *expected), label
        assert await views.locator("a[aria-current=page]").inner_text() == label
        await _fits(tab)
    await _shot(tab, f"desk-view-{tab.name}")

    # Sorted by last change (newest first), then the other way round.
    await views.locator("a:has-text('Open')").first.click()
    await tab.wait_for_load_state()
    await tab.locator("p.sorts a:has-text('Updated')").click()
    await tab.wait_for_url("**/queue?sort=-updated")
    newest_first = await _rows(tab)
    assert newest_first[0] == f"JC-{ids['late']}"  # Sam's follow-up moved it last
    assert newest_first[1] == f"JC-{ids['week']}"  # then its assignment
    await tab.locator("p.sorts a:has-text('Updated')").click()
    await tab.wait_for_url("**/queue?sort=updated")
    assert await _rows(tab) == newest_first[::-1]
    await tab.locator("p.sorts a:has-text('Created')").click()
    await tab.wait_for_url("**/queue?sort=-created")
    assert await _rows(tab) == _refs(ids, "later", "week", "today", "late")

    # Every status is offered; "done" shows the closed ticket, "all" shows all five.
    await tab.goto(base + "/queue")
    options = await tab.locator("select[name=status] option").all_inner_texts()
    for status in ("all statuses", "awaiting identity", "open", "in progress", "done", "rejected"):
        assert status in options, options
    await tab.select_option("select[name=status]", "done")
    await tab.click("form.filters button[type=submit]")
    await tab.wait_for_url("**status=done**")
    assert await _rows(tab) == _refs(ids, "closed")
    assert "closed" in await tab.inner_text("table.queue td.due")
    await tab.select_option("select[name=status]", "all")
    await tab.click("form.filters button[type=submit]")
    await tab.wait_for_url("**status=all**")
    assert sorted(await _rows(tab)) == sorted(_refs(ids, *ids))
    await _fits(tab)
    assert tab.errors == []


@pytest.mark.timeout(120)
async def test_search_finds_a_closed_ticket_by_a_word_of_its_mail_and_by_reference(
    served: tuple[App, str],  # noqa: F811
    tab: Any,
) -> None:
    app, base = served
    ids = _seed(app)
    closed = ids["closed"]
    await _sign_in(tab, base)

    # A word of the body, in another case, of a ticket that is done.
    await tab.fill("input[name=q]", "zephyrine")
    await tab.click("form.search button[type=submit]")
    await tab.wait_for_url("**/queue?q=zephyrine")
    assert await _rows(tab) == [f"JC-{closed}"]
    assert "Search" in await tab.inner_text("h1")
    await _fits(tab)
    await _shot(tab, f"desk-search-{tab.name}")

    for typed in (f"JC-{closed}", f"jc{closed}", str(closed), "passport", "jana.novak@"):
        await tab.fill("input[name=q]", typed)
        await tab.click("form.search button[type=submit]")
        await tab.wait_for_load_state()
        assert await _rows(tab) == [f"JC-{closed}"], typed

    await tab.click(f"table.queue a[href='/tickets/{closed}'] >> nth=0")
    await tab.wait_for_url(f"{base}/tickets/{closed}")
    assert "Access request" in await tab.inner_text("h1")

    # /tickets/JC-7 opens the ticket, like /tickets/7.
    response = await tab.goto(f"{base}/tickets/JC-{closed}")
    assert response.status == 200
    assert f"JC-{closed}" in await tab.inner_text("h1")
    due = await tab.locator(".due-box").bounding_box()
    assert due is not None and due["x"] >= 0 and due["x"] + due["width"] <= tab.width
    assert "Closed" in await tab.inner_text(".due-box")
    # The due box of an open ticket, whole on a phone too.
    await tab.goto(f"{base}/tickets/{ids['late']}")
    box = tab.locator(".due-box")
    due = await box.bounding_box()
    assert due is not None and due["x"] >= 0 and due["x"] + due["width"] <= tab.width
    assert await box.evaluate("e => e.scrollWidth <= e.clientWidth")  # its text not cut off
    assert "Overdue 3 d" in await box.inner_text()
    await _shot(tab, f"desk-ticket-{tab.name}")
    assert tab.errors == []


@pytest.mark.timeout(120)
async def test_an_unknown_or_malformed_reference_is_a_friendly_404(
    served: tuple[App, str],  # noqa: F811
    tab: Any,
) -> None:
    app, base = served
    add_staff(app)
    await _sign_in(tab, base)
    response = await tab.goto(base + "/tickets/JC-9999")
    assert response.status == 404
    assert "No such ticket" in await tab.inner_text("h1")
    assert "There is no ticket JC-9999" in await tab.inner_text("main")
    assert await tab.locator("header.top nav a[href='/queue']").count() == 1  # the layout
    assert await tab.input_value("main input[name=q]") == "JC-9999"
    await _fits(tab)
    await _shot(tab, f"desk-404-{tab.name}")

    response = await tab.goto(base + "/tickets/not-a-ticket")
    assert response.status == 404
    assert "is not a ticket reference" in await tab.inner_text("main")
    await tab.click("main form.search button[type=submit]")
    await tab.wait_for_url("**/queue?q=not-a-ticket")
    assert "No ticket, open or closed, matches" in await tab.inner_text("main")
    assert tab.errors == []
