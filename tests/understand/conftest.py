"""Shared fixtures: the real data files, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from privbot.app import load_understanding
from privbot.config import Settings
from privbot.understand import Classifier, Intents, load_intents
from privbot.understand.policy import Policy, Topics, load_policy, load_topics

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def intents() -> Intents:
    return load_intents(REPO / "intents")


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(REPO / "replies" / "policy.md")


@pytest.fixture(scope="session")
def topics() -> Topics:
    return load_topics(REPO / "replies" / "policy_topics.toml")


@pytest.fixture(scope="session")
def classifier(intents: Intents, policy: Policy, topics: Topics) -> Classifier:
    """The phrase layer alone (fast, no model): for tests of the phrase lists."""
    return Classifier.build(intents, policy, topics)


@pytest.fixture(scope="session")
def shipped() -> Classifier:
    """The classifier privbot runs: phrase lists and the learned layer trained on the bank
    (cached beside it, so only a fresh checkout trains)."""
    return load_understanding(Settings())[2]
