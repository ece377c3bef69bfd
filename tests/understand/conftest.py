"""Shared fixtures: the real data files, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    return Classifier.build(intents, policy, topics)
