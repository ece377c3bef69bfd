"""Parsing the policy and citing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from privbot.understand.policy import Policy, PolicyError, Topics, answer, load_policy, parse_policy

from .conftest import REPO

POLICY_TEXT = (REPO / "replies" / "policy.md").read_text(encoding="utf-8")
# Citations quote the policy with markdown links reduced to their text.
PLAIN = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", POLICY_TEXT)


def test_policy_is_the_seed_unchanged() -> None:
    seed = REPO.parent / "shared" / "seeds" / "000_f932781b1456d86a.txt"
    if not seed.exists():
        pytest.skip("seed file not present on this machine")
    assert (REPO / "replies" / "policy.md").read_bytes() == seed.read_bytes()


def test_sections_and_headings(policy: Policy) -> None:
    headings = policy.headings
    assert headings[0] == "JunoCloud.me - Remote Storage Sevice"  # the policy's own spelling
    for expected in (
        "What information do we collect from visitors:",
        "Cookies",
        "Using your personal information and information about your contacts",
        "Disclosures",
        "Marketing and other uses of your non-personal data by us and by 3rd parties",
        "Your rights",
        "Updating information",
        "Contact",
    ):
        assert expected in headings
    assert len(headings) == 13
    # Sentences ending in ":" with a comma are lead-ins, not headings.
    assert "In addition, we may disclose your personal information:" not in headings


def test_clauses_keep_exact_words(policy: Policy) -> None:
    rights = policy.section("Your rights")
    assert [c.letter for c in rights.clauses] == ["a", "b"]
    assert rights.clauses[0].text == (
        "the payment of an administrative fee (currently fixed at EUR 50.00); and"
    )
    using = policy.section("Using your personal information and information about your contacts")
    assert [c.letter for c in using.clauses] == list("abcdefghijkl")
    for section in policy.sections:
        for text in (*section.paragraphs, *(c.text for c in section.clauses)):
            assert text in PLAIN
    assert "Wayback" not in " ".join(p for s in policy.sections for p in s.paragraphs)


def test_contact_link_is_reduced_to_its_text(policy: Policy) -> None:
    (paragraph,) = policy.section("Contact").paragraphs
    assert paragraph.endswith("by email to support@junocloud.me.")


@pytest.mark.parametrize(
    ("question", "heading", "must_contain"),
    [
        ("How do I opt out of cookies?", "Cookies", "opt-out"),
        ("Is there a fee for a copy of my data?", "Your rights", "administrative fee"),
        ("Are my files encrypted?", "Security of your personal information", "SSL"),
        ("Kostet eine Kopie meiner Daten etwas?", "Your rights", "fee"),
    ],
)
def test_typical_questions_cite_the_right_section(
    policy: Policy, topics: Topics, question: str, heading: str, must_contain: str
) -> None:
    cited = answer(policy, question, topics)
    assert cited, question
    assert cited[0].heading == heading
    assert any(must_contain in c.text for c in cited if c.heading == heading)
    for citation in cited:
        assert citation.text in PLAIN
        assert citation.heading in policy.headings


def test_third_party_question_cites_sharing_sections(policy: Policy, topics: Topics) -> None:
    cited = answer(policy, "Do you share my data with third parties?", topics)
    headings = {c.heading for c in cited}
    assert headings & {
        "Disclosures",
        "Marketing and other uses of your non-personal data by us and by 3rd parties",
    }


def test_unrelated_question_gets_no_citation(policy: Policy, topics: Topics) -> None:
    assert answer(policy, "What is the capital of Peru?", topics) == ()


def test_changing_the_policy_changes_the_citation(tmp_path: Path, topics: Topics) -> None:
    changed = POLICY_TEXT.replace("EUR 50.00", "EUR 10.00")
    path = tmp_path / "policy.md"
    path.write_text(changed, encoding="utf-8")
    cited = answer(load_policy(path), "Is there a fee for a copy of my data?", topics)
    assert any("EUR 10.00" in c.text for c in cited)
    assert not any("EUR 50.00" in c.text for c in cited)


def test_bad_policy_files_raise(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.md")
    with pytest.raises(PolicyError, match=r"p\.md: text before the first heading"):
        parse_policy("Just one sentence without headings, really.\n", source="p.md")
