"""outbox.queue: what the reply caps count."""

from __future__ import annotations

from datetime import timedelta

from privbot.app import App
from privbot.mail.compose import compose_reply
from privbot.models import utcnow
from privbot.outbox.queue import counted_as, queue_outgoing, replies_sent_since
from testing.apps import make_app


def _queue(app: App, to: str, kind: str = "auto") -> None:
    with app.sessions.begin() as s:
        reply = compose_reply(from_addr="support@junocloud.me", to_addr=to, subject="Re: x",
                              body="ok", domain="junocloud.me")  # fmt: skip
        queue_outgoing(s, reply, to_addr=to, kind=kind)


def test_a_mailbox_and_its_domain_are_counted_as_the_caps_compare_them(db_url: str) -> None:
    assert counted_as("J.O.E+news@GoogleMail.com.") == {"to_key": "joe@gmail.com",
                                                        "to_domain": "gmail.com"}  # fmt: skip
    app = make_app(db_url)
    try:
        for to in ("joe@gmail.com", "j.oe+x@googlemail.com", "ann@gmail.com", "joe@example.org"):
            _queue(app, to)
        _queue(app, "joe@gmail.com", kind="staff")  # staff's replies are not capped
        since = utcnow() - timedelta(hours=24)
        with app.sessions() as s:
            sent = replies_sent_since(s, "Joe@Gmail.com", since)
            assert (sent.mailbox, sent.domain) == (2, 3)
            # The domain's count stops where the cap would: never a whole day of a domain.
            assert replies_sent_since(s, "x@gmail.com", since, domain_limit=2).domain == 2
            assert replies_sent_since(s, "x@gmail.com", utcnow()).domain == 0
    finally:
        app.close()
