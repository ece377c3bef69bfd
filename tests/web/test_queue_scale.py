"""The queue with 100,000 tickets: the page reads an index, and answers quickly."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import insert, text

from privbot.app import App
from privbot.models import Ticket, utcnow
from privbot.web import create_app
from testing.apps import make_app
from tests.web.conftest import add_staff, login

N = 100_000
# Generous for a loaded 2-core CI machine; measured figures are far below (see the README).
BUDGET = 1.0


def _fill(app: App) -> None:
    now = utcnow()
    types = ["access", "deletion", "correction", "question", "other"]
    rows = [
        {
            "type": types[i % 5],
            "status": "awaiting_identity" if i % 5 == 0 else "open",
            "requester": f"person{i}@example{i % 97}.org",
            "subject": f"Request number {i}",
            "intents": [],
            "language": ["en", "de", "fr", "es"][i % 4],
            "assignee": "ada@junocloud.me" if i % 10 == 0 else None,
            "created_at": now,
            "updated_at": now,
            "due_at": now + timedelta(minutes=(i * 7919) % N - N // 3),
            # A fifth is closed: the queue must pass over them without reading them.
            "closed_at": now if i % 5 == 4 else None,
        }
        for i in range(N)
    ]
    with app.engine.begin() as conn:
        for start in range(0, N, 20_000):
            conn.execute(insert(Ticket), rows[start : start + 20_000])
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE tickets"))
        else:
            conn.execute(text("ANALYZE"))


def test_queue_stays_fast_with_100000_tickets(db_url: str) -> None:
    app = make_app(db_url, secret_key="k")
    try:
        _fill(app)
        add_staff(app)
        with app.engine.connect() as conn:
            open_due = "SELECT id FROM tickets WHERE closed_at IS NULL ORDER BY due_at, id LIMIT 50"
            if conn.dialect.name == "sqlite":
                plan = " ".join(
                    str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + open_due))
                )
                assert "ix_tickets_open_due" in plan and "TEMP B-TREE" not in plan, plan
            else:
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + open_due)))
                assert "ix_tickets_open_due" in plan and "Sort" not in plan, plan
        with TestClient(create_app(app)) as client:
            login(client)
            timings = {}
            for name, url in [
                ("first page", "/queue"),
                ("page 100", "/queue?page=100"),
                ("type filter", "/queue?type=deletion"),
                ("assignee filter", "/queue?assignee=ada@junocloud.me&language=en"),
                ("address search", "/queue?q=person4242@"),
                ("subject search", "/queue?q=number 77777"),
            ]:
                client.get(url)  # warm caches once, as a working queue is
                start = time.perf_counter()
                response = client.get(url)
                timings[name] = time.perf_counter() - start
                assert response.status_code == 200, name
            assert "JC-4243" in client.get("/queue?q=person4242@").text
        print(
            f"\n{app.engine.dialect.name}: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
        )
        slow = {k: v for k, v in timings.items() if v > BUDGET}
        assert not slow, slow
    finally:
        app.close()
