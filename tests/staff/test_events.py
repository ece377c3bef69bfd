"""Every audit event reads as a sentence: no Python or JSON repr reaches staff.

The kinds come from the code itself: every `record(` call in src/ is found by parsing the
source, so a kind added later without a sentence fails here. Each is described with its
recorded keys set to every type a detail holds (lists, None, booleans, mappings), and a
real run of the pipeline and the staff actions checks the events as they are stored.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from sqlalchemy import select

from privbot import optouts, pipeline, retention
from privbot.app import App
from privbot.models import Event
from privbot.staff import actions, auth, events, views
from testing.apps import mail, make_app
from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src" / "privbot"
FORBIDDEN = ("[", "]", "None", "True", "False", "{", "}")
# `record(session, <a name>, ...)`: the kinds that name stands for, by file and name.
DYNAMIC = {
    ("pipeline/__init__.py", "status"): ("quarantined", "screened"),
    ("staff/actions.py", "event"): ("staff_reply", "extension_notice_queued"),
}
SAMPLES: list[Any] = [
    None,
    True,
    False,
    [],
    ["marketing_email", "targeted_ads"],
    [["question", 0.5]],
    {},
    {"probabilities": {"question": 0.9}, "evidence": {"question": [["word", 1.0]]}},
    "plain words",
    0,
    1,
    2,
    0.875,
    "2025-03-04T10:00:00+00:00",
]
ADA = "ada@junocloud.me"
BEA = "bea@junocloud.me"


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8"))


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's `NAME = "text"` constants: a kind may be recorded through one."""
    found: dict[str, str] = {}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update({t.id: value.value for t in targets if isinstance(t, ast.Name)})
    return found


@cache
def recorded() -> dict[str, set[str]]:
    """Each kind the code records and the detail keys it records it with ('**': more).
    A call whose kind cannot be told is listed under '?file:line'."""
    modules = list(_modules())
    everywhere: dict[str, str] = {}
    for _, tree in modules:
        everywhere.update(_constants(tree))
    kinds: dict[str, set[str]] = {}
    for where, tree in modules:
        local = {**everywhere, **_constants(tree)}
        for call in ast.walk(tree):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id == "record"
                and len(call.args) >= 2
            ):
                continue
            kind = call.args[1]
            names: tuple[str, ...] = ()
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                names = (kind.value,)
            elif isinstance(kind, ast.Name):
                constant = local.get(kind.id)
                names = (constant,) if constant else DYNAMIC.get((where, kind.id), ())
            keys = {k.arg or "**" for k in call.keywords} - {"ticket", "message", "actor"}
            for name in names or (f"?{where}:{call.lineno}",):
                kinds.setdefault(name, set()).update(keys)
    return kinds


def readable(text: str) -> bool:
    return bool(text.strip()) and not any(token in text for token in FORBIDDEN)


def test_the_source_is_read_whole() -> None:
    kinds = recorded()
    # A few of each way of recording: literal kinds, kinds in a name, details spread in.
    for kind in ("opt_out_applied", "assigned", "classified", "quarantined", "staff_reply"):
        assert kind in kinds
    assert "**" in kinds["classified"] and "**" in kinds["retention_run"]
    assert len(kinds) >= 35


@pytest.mark.parametrize("kind", sorted(recorded()))
def test_every_recorded_kind_has_its_sentence_and_no_repr(kind: str) -> None:
    assert not kind.startswith("?"), (
        f"{kind[1:]} records a kind held in a variable: name its values in DYNAMIC"
    )
    assert kind in events.SENTENCES, (
        f"{kind!r} is recorded but has no sentence: add one to privbot/staff/events.py"
    )
    keys = [*sorted(recorded()[kind] - {"**"}), "messages_erased", "extra_key"]
    for sample in SAMPLES:
        text = events.sentence(kind, dict.fromkeys(keys, sample))
        assert readable(text), (kind, sample, text)
    assert readable(events.sentence(kind, {}))


def test_a_kind_with_no_sentence_yet_still_reads_as_words() -> None:
    text = events.sentence(
        "parcel_weighed", {"file": "dni.pdf", "by": None, "ok": True, "ids": [1, 2]}
    )
    assert text == "Parcel weighed: file dni.pdf; by none; ok yes; ids 1 and 2."
    assert readable(events.sentence("some_future_kind", {"x": {"y": [None, False]}}))


def test_the_sentences_staff_read() -> None:
    s = events.sentence
    assert s("opt_out_applied", {"address": "eva@example.org", "scopes": ["marketing_email"],
                                 "already": []}) == (
        "Opted out of: marketing e-mails for eva@example.org."
    )  # fmt: skip
    assert s("assigned", {"to": "eva@junocloud.me", "previous": None}) == (
        "Assigned to eva@junocloud.me (was nobody)."
    )
    assert s("language_set", {"to": "de", "previous": "fr"}) == (
        "Language set to German (was French)."
    )
    assert s("status_changed", {"to": "in_progress", "previous": "awaiting_identity"}) == (
        "Status set to in progress (was awaiting identity)."
    )
    assert s(
        "classified",
        {"intents": ["opt_out", "question"], "confidence": 0.91, "language": "de",
         "low_confidence": False, "held_back": [], "automatic": True},
    ) == (
        "Read as an opt-out and a question (91% sure), written in German; done automatically."
    )  # fmt: skip
    assert s(
        "deadline_extended",
        {"months": 1, "previous": "2025-03-04T10:00:00+00:00", "due": "2025-04-04T10:00:00+00:00",
         "reason": "archives"},
    ) == "Deadline extended by 1 month to 2025-04-04 (was 2025-03-04): archives."  # fmt: skip


@pytest.fixture
def app(db_url: str) -> Iterator[App]:
    made = make_app(db_url, secret_key="events-secret")
    with made.sessions.begin() as session:
        auth.add_staff(session, ADA, "correct horse battery", actor="test")
        auth.add_staff(session, BEA, "correct horse battery", actor="test")
    try:
        yield made
    finally:
        made.close()


def test_events_of_a_real_day_read_as_sentences_on_the_page_and_in_the_cli(app: App) -> None:
    def receive(body: str, sender: str = "Eva <eva@example.org>", **headers: str) -> Any:
        raw = mail(sender=sender, subject="Privacy", body=body, headers=headers or None)
        return pipeline.receive(app, raw, source="file")

    optout = receive("Please stop sending me your newsletter.")
    access = receive("Bitte senden Sie mir eine Kopie aller Daten, die Sie über mich speichern.")
    receive(
        "I am out of the office.", sender="bot@example.net", **{"Auto-Submitted": "auto-replied"}
    )
    pipeline.receive(app, b"\xff\xfe not a mail at all" * 3, source="file")
    tid = access.ticket
    actions.assign(app, tid, BEA, actor=ADA)
    actions.assign(app, tid, None, actor=ADA)
    actions.set_status(app, tid, "in_progress", actor=ADA)
    actions.set_language(app, tid, "fr", actor=ADA)
    actions.set_language(app, tid, "de", actor=ADA)
    actions.add_note(app, tid, "Called her [ok]", actor=ADA)
    actions.extend_deadline(app, tid, 1, "archives", actor=ADA)
    # (No reclassify: it retrains the classifier, minutes; its sentence is tested above.)
    actions.apply_opt_out(app, tid, "eva@example.org", ["targeted_ads"], actor=ADA)
    actions.undo_opt_out(app, tid, "eva@example.org", ["targeted_ads"], actor=ADA)
    actions.send_reply(app, tid, "Dear Eva,\n\nDone.\n", actor=ADA)
    with app.sessions.begin() as session:
        auth.create_token(session, "marketing", actor=ADA)
        auth.revoke_token(session, "marketing", actor=ADA)
    retention.run(app)

    with app.sessions() as session:
        stored = session.scalars(select(Event).order_by(Event.id)).all()
        rows = [views.event_dict(e) for e in stored]
    kinds = {r["kind"] for r in rows}
    assert {
        "ticket_opened", "classified", "opt_out_applied", "screened", "quarantined",
        "assigned", "language_set", "note", "deadline_extended", "opt_out_withdrawn",
        "staff_reply", "token_created", "retention_run",
    } <= kinds  # fmt: skip
    for row in rows:
        # A note's own words may hold brackets; everything else is privbot's sentence.
        if row["kind"] != "note":
            assert readable(row["text"]), row
    texts = [r["text"] for r in rows]
    assert "Opted out of: marketing e-mails for eva@example.org." in texts
    assert f"Assigned to {BEA} (was nobody)." in texts and f"Unassigned (was {BEA})." in texts
    assert "Language set to German (was French)." in texts
    assert "Opt-out withdrawn for eva@example.org: targeted advertising." in texts

    # The ticket page's trail and `privbot tickets show` say the same sentences.
    detail = views.ticket_detail(app, tid)
    assert detail is not None
    trail = [e["text"] for e in detail["events"]]
    assert "Language set to German (was French)." in trail
    assert [m["text"] for m in detail["thread"] if m["direction"] == "note"] == ["Called her [ok]"]
    from privbot.cli.staff import _format_ticket

    shown = _format_ticket(detail)
    assert "Language set to German (was French)." in shown
    assert "internal note by ada@junocloud.me" in shown
    for line in shown.split("audit trail:")[1].splitlines():
        assert "None" not in line and "True" not in line and "{" not in line, line
    assert optout.ticket is not None
    assert optouts.status(app.sessions, "eva@example.org")["scopes"] == ["marketing_email"]
