"""Attachments and the problems page over real HTTP: uvicorn on loopback, httpx as the
client, SQLite and PostgreSQL. A download is always a file to save (never rendered from our
origin) and always an audit event; retries and the evidence check are CSRF-checked forms."""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx
from sqlalchemy import select

from privbot import pipeline
from privbot.app import App
from privbot.models import Event, Message, Outgoing
from testing.apps import mail, make_app
from testing.servers import CaptureRelay
from tests.outbox.test_retry import _refused_reply
from tests.staff.test_evidence import PASSPORT, access_with_evidence, evidence_mail
from tests.web.conftest import PASSWORD, STAFF, add_staff, csrf_of

HOSTILE_HTML = b"<html><script>document.title='pwned'</script><h1>not a page of ours</h1>"


def signed_in(base: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/login")
    data = {"email": STAFF, "password": PASSWORD, "csrf": csrf_of(form.text), "next": "/queue"}
    response = client.post("/login", data=data)
    assert response.status_code == 303, response.text
    return client, csrf_of(client.get("/queue").text)


def _prefix(ticket_id: int, message_id: int) -> str:
    return f"/tickets/{ticket_id}/messages/{message_id}/attachments/"


def _events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_a_download_is_a_file_to_save_never_a_page(served: tuple[App, str]) -> None:
    app, base = served
    add_staff(app)
    files = (
        ("dni.pdf", "application/pdf", PASSPORT),
        ("scan.html", "text/html", HOSTILE_HTML),  # a stranger's HTML: must never render
        ('..\\..\\pass"port\u202egpj.exe\r\n.html', "image/svg+xml", b"<svg onload=alert(1)/>"),
        ("Führerschein 正面.jpg", "image/jpeg", b"\xff\xd8\xff\xe0JFIF"),
    )
    ticket_id, message_id = access_with_evidence(app, files=files)
    client, _csrf = signed_in(base)
    page = client.get(f"/tickets/{ticket_id}").text
    links = re.findall(
        rf'href="(/tickets/{ticket_id}/messages/{message_id}/attachments/\d+)"', page
    )
    assert len(links) == 4
    assert "application/pdf" in page and "4.8 kB" in page  # type and size beside each name

    expected = [("dni.pdf", PASSPORT), ("scan.html", HOSTILE_HTML),
                ("_.._pass_portgpj.exe.html", b"<svg onload=alert(1)/>"),
                ("Führerschein 正面.jpg", b"\xff\xd8\xff\xe0JFIF")]  # fmt: skip
    for link, (name, data) in zip(links, expected, strict=True):
        response = client.get(link)
        assert response.status_code == 200 and response.content == data
        h = response.headers
        assert h["content-type"] == "application/octet-stream"
        assert h["x-content-type-options"] == "nosniff"
        assert h["content-security-policy"].split(";")[0] == "sandbox"
        assert "default-src 'none'" in h["content-security-policy"]
        assert "no-store" in h["cache-control"]
        disposition = h["content-disposition"]
        assert disposition.startswith('attachment; filename="')
        star = re.search(r"filename\*=UTF-8''(\S+)$", disposition)
        assert star is not None and unquote(star.group(1)) == name
        fallback = re.search(r'filename="([^"]*)"', disposition)
        assert fallback is not None and fallback.group(1).isascii()
        assert "\r" not in disposition and "\n" not in disposition

    opened = _events(app, "attachment_opened")
    assert [(e.actor, e.ticket_id, e.message_id, e.detail["index"], e.detail["filename"],
             e.detail["via"]) for e in opened] == [
        (STAFF, ticket_id, message_id, i, name, "web") for i, (name, _) in enumerate(expected)
    ]  # fmt: skip
    audit = client.get(f"/audit?ticket=JC-{ticket_id}&kind=attachment_opened")
    assert audit.status_code == 200 and audit.text.count("dni.pdf") >= 1


def test_downloads_refuse_strangers_wrong_numbers_and_removed_files(
    served: tuple[App, str],
) -> None:
    app, base = served
    add_staff(app)
    ticket_id, message_id = access_with_evidence(app)
    link = f"/tickets/{ticket_id}/messages/{message_id}/attachments/0"

    anonymous = httpx.get(base + link, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    assert PASSPORT[:20] not in anonymous.content
    client, csrf = signed_in(base)
    other = pipeline.receive(app, mail(sender="bob@example.org"), source="file")
    assert client.get(f"/tickets/{other.ticket}/messages/{message_id}/attachments/0"
                      ).status_code == 404  # fmt: skip
    assert (
        client.get(f"/tickets/{ticket_id}/messages/{message_id}/attachments/3").status_code == 404
    )
    assert (
        client.get(f"/tickets/{ticket_id}/messages/{message_id}/attachments/-1").status_code == 400
    )
    assert _events(app, "attachment_opened") == []  # nothing was given out

    # Marking checked is a form: without the session's token it is refused.
    assert client.post(f"/tickets/{ticket_id}/evidence-checked", data={}).status_code == 403
    assert _events(app, "evidence_checked") == []
    done = client.post(f"/tickets/{ticket_id}/evidence-checked", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"].endswith("done=evidence_checked")
    [check] = _events(app, "evidence_checked")
    assert check.actor == STAFF and check.ticket_id == ticket_id
    page = client.get(done.headers["location"]).text
    assert "Evidence marked checked" in page and f"Checked by <strong>{STAFF}</strong>" in page

    from privbot import retention

    assert retention.run(app).evidence_attachments_removed == 1
    gone = client.get(link)
    assert gone.status_code == 410 and "removed after the evidence was checked" in gone.text
    page = client.get(f"/tickets/{ticket_id}").text
    assert "removed after the evidence was checked" in page and link not in page
    # Nothing left to check: refused with the reason, on the page.
    again = client.post(f"/tickets/{ticket_id}/evidence-checked", data={"csrf": csrf})
    assert again.status_code == 400 and "no attachments to check" in again.text


def test_the_problems_page_lists_what_went_wrong_and_retries_it(
    served: tuple[App, str], db_url: str, relay: CaptureRelay
) -> None:
    app, base = served
    add_staff(app)
    strict = make_app(db_url, max_message_bytes="1024")  # the limit staff will raise
    try:
        big = mail(sender="Zoe <zoe@example.org>", subject="Please <b>delete</b> my account",
                   body="Please delete my account.\n" + "x" * 3000)  # fmt: skip
        quarantined = pipeline.receive(strict, big, source="file")
    finally:
        strict.close()
    assert quarantined.status == "quarantined"
    broken = b"From: \r\n\r\n"  # no sender at all: quarantined by the served app itself
    nobody = pipeline.receive(app, broken + b"hello", source="file")
    reply = _refused_reply(app, relay, "carl@example.org")

    client, csrf = signed_in(base)
    page = client.get("/problems")
    assert page.status_code == 200
    html = page.text
    assert 'href="/problems"' in client.get("/queue").text  # in the nav of every staff page
    assert f"Message #{quarantined.message}" in html and f"Message #{nobody.message}" in html
    assert "too large" in html and "zoe@example.org" in html
    assert "Please &lt;b&gt;delete&lt;/b&gt; my account" in html  # hostile text stays text
    assert f"Reply #{reply}" in html and "550 No such user here" in html
    assert html.count("Retry</button>") == 3

    # CSRF as every staff form: refused without the token, nothing retried.
    refused = client.post(f"/problems/messages/{quarantined.message}/retry", data={})
    assert refused.status_code == 403
    assert client.post(f"/problems/replies/{reply}/retry", data={}).status_code == 403
    assert _events(app, "retried") == [] and _events(app, "reply_retried") == []

    retried = client.post(f"/problems/messages/{quarantined.message}/retry", data={"csrf": csrf})
    assert retried.status_code == 303
    after = client.get(retried.headers["location"]).text
    assert f"Message #{quarantined.message} was put through again: handled, ticket JC-" in after
    assert f'id="message-{quarantined.message}"' not in after
    with app.sessions() as s:
        assert s.get(Message, quarantined.message).status == "handled"  # type: ignore[union-attr]
    [event] = _events(app, "retried")
    assert (event.actor, event.message_id, event.detail["previous"]) == (
        STAFF, quarantined.message, "quarantined",
    )  # fmt: skip

    # One whose cause is not fixed: put through again, set aside again, said so.
    same = client.post(f"/problems/messages/{nobody.message}/retry", data={"csrf": csrf})
    assert "is quarantined again" in client.get(same.headers["location"]).text

    relay.clear_faults()
    back = client.post(f"/problems/replies/{reply}/retry", data={"csrf": csrf})
    assert back.status_code == 303
    assert (
        f"Reply #{reply} is back in the outbox queue" in client.get(back.headers["location"]).text
    )
    with app.sessions() as s:
        row = s.get(Outgoing, reply)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    [event] = _events(app, "reply_retried")
    assert event.actor == STAFF and event.detail["outbox"] == reply
    # Retrying it again is refused with the reason on the page.
    twice = client.post(f"/problems/replies/{reply}/retry", data={"csrf": csrf})
    assert twice.status_code == 400 and "only a failed reply is retried" in twice.text


def test_every_message_of_the_thread_lists_its_attachments(served: tuple[App, str]) -> None:
    app, base = served
    add_staff(app)
    ticket_id, first = access_with_evidence(app)
    second = pipeline.receive(
        app, evidence_mail(ticket_id, files=(("back.png", "image/png", b"PNG" * 10),)),
        source="file",
    )  # fmt: skip
    client, _ = signed_in(base)
    page = client.get(f"/tickets/{ticket_id}").text
    assert f"/tickets/{ticket_id}/messages/{first}/attachments/0" in page
    assert f"/tickets/{ticket_id}/messages/{second.message}/attachments/0" in page
    assert "back.png" in page and "image/png · 30 bytes" in page
    assert "2 attachments in the conversation" in page
