"""Accuracy floors on the blind set: mail written by people who never saw the classifier.

The floors are a little under what privbot holds today on each frozen batch (never tuned
on); a change that makes understanding worse on real mail fails here. They rise as the
understanding improves, and fall short of the issue's targets (92% exact): that gap is open.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privbot.app import App
from privbot.cli.main import blind_report, newest_blind_batch
from privbot.understand.blind import BlindReport, read_batch
from testing.apps import make_app

BLIND = Path(__file__).resolve().parents[1] / "data" / "blind"
LANGUAGES = {
    "en",
    "de",
    "fr",
    "es",
    "it",
    "nl",
    "pt",
    "pl",
    "sv",
    "da",
    "cs",
    "ro",
    "el",
    "hu",
    "fi",
}

# (exact intent sets overall, worst language, confidently wrong at most, unasked actions per
# 200 mails at most, machine mails answered at most, people screened at most, question
# sections hit, honest gaps)
# Measured 2026-12-04 on batch16 (the freshest; see its README), once, with the bank at
# 11,965 mails (batch15 in it) and read receipts screened: 92.7% exact, worst language 83%
# (da, fr), confidently wrong 2.3%, 0.4 unasked actions per 200, 1 machine mail answered,
# 1 person screened; question sections hit 97%, honest gap 100%. batch14 and batch15, on
# nearly the same code, had 91.9% and 89.0%: the spread between two batches of 480.
# Batches 1-15 are in the example bank (floors on them would measure the bank).
FLOORS = {
    "batch16": (0.90, 0.76, 0.035, 1.5, 2, 2, 0.92, 0.95),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    return make_app(f"sqlite:///{tmp_path_factory.mktemp('blind')}/privbot.db")


def test_only_the_freshest_batch_has_floors() -> None:
    """Older batches join the bank once a newer one exists; the floors follow the newest."""
    assert sorted(FLOORS) == [p.name for p in newest_blind_batch(BLIND)]


def test_every_batch_is_well_formed() -> None:
    batches = sorted(p for p in BLIND.glob("batch*") if p.is_dir())
    assert batches, "no blind batch"
    for batch in batches:
        mails = read_batch(batch)
        assert len(mails) >= 450 and {m.language for m in mails} == LANGUAGES
        for path in batch.glob("*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                assert row["skip"] == (row["intents"] == []), row["id"]
                if "question" in row["intents"]:
                    assert row["sections"], row["id"]


@pytest.mark.parametrize("batch", sorted(FLOORS))
def test_blind_floors(app: App, batch: str) -> None:
    report: BlindReport = blind_report(app, BLIND / batch)
    exact, worst, wrong, unasked, machines, people, sections, gaps = FLOORS[batch]
    summary = report.format()
    assert report.exact >= exact, summary
    assert min(report.exact_by_language().values()) >= worst, summary
    assert report.confidently_wrong <= wrong, summary
    assert len(report.unasked_actions) / len(report.judged) * 200 <= unasked, summary
    assert len(report.machines_answered) <= machines, summary
    assert len(report.people_screened) <= people, summary
    assert report.section_hit >= sections and report.honest_gap >= gaps, summary
    # No reply quotes a clause twice; every reply to a person is in a language we write.
    people_seen = [j for j in report.judged if not j.mail.skip and not j.seen.screened]
    assert not [j.mail.id for j in people_seen if j.seen.quoted_twice], summary
    native = sum(j.seen.language == j.mail.language for j in people_seen)
    assert native >= 0.98 * len(people_seen), summary


def test_the_newest_batch_is_what_eval_reports() -> None:
    newest = newest_blind_batch(BLIND)
    assert newest and newest[0].name == max(
        (p.name for p in BLIND.glob("batch*")), key=lambda n: int(n[5:])
    )
