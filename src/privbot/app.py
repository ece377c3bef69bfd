"""The one object built from settings: database, understanding, reply templates, signals.

Nothing in privbot keeps module-level state; every channel, worker, command and test gets
an `App` handed in (tests build their own).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from privbot import db
from privbot.config import ConfigError, Settings
from privbot.models import Example
from privbot.policy import Policy, PolicyError, load_policy, load_topics
from privbot.replies import Replies, load_replies
from privbot.understand import Classifier, IntentsError, load_intents


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    replies: Replies
    policy: Policy
    classifier: Classifier
    # Set when there is new work, so idle workers wake at once instead of at their next poll.
    inbound_ready: threading.Event = field(default_factory=threading.Event)
    outbox_ready: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.engine.dispose()


def data_folder(name: str) -> Path:
    """Where a data folder (replies/, intents/) lives: the checkout's top level, else the cwd."""
    checkout = Path(__file__).resolve().parents[2] / name
    return checkout if checkout.is_dir() else Path.cwd() / name


def load_understanding(
    settings: Settings, extra_examples: Iterable[tuple[str, str, str]] = ()
) -> tuple[Replies, Policy, Classifier]:
    """Reply templates, the policy and the classifier, all from data; errors name the file.

    `extra_examples` are staff corrections (text, intent, language) from the database.
    """
    replies_dir = Path(settings.extra.get("REPLIES_DIR") or data_folder("replies"))
    intents_dir = Path(settings.extra.get("INTENTS_DIR") or data_folder("intents"))
    try:
        intents = load_intents(intents_dir)
        policy = load_policy(replies_dir / "policy.md")
        topics = load_topics(replies_dir / "policy_topics.toml")
        # An intent since removed from intents/ must not stop start-up: its examples wait.
        known = [e for e in extra_examples if e[1] in intents.names]
        classifier = Classifier.build(intents, policy, topics, extra_examples=known)
    except (IntentsError, PolicyError) as exc:
        raise ConfigError(str(exc)) from None
    replies = load_replies(replies_dir, intents=intents.names)
    return replies, policy, classifier


def build_app(settings: Settings, *, migrate: bool = True) -> App:
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    sessions = db.make_sessions(engine)
    replies, policy, classifier = load_understanding(settings, _staff_examples(sessions))
    return App(settings, engine, sessions, replies, policy, classifier)


def _staff_examples(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    """Reclassifications staff made: the classifier learns from them at every start."""
    with sessions() as session:
        try:
            rows = session.execute(
                select(Example.text, Example.intent, Example.language).order_by(Example.id)
            ).all()
        except (OperationalError, ProgrammingError):
            return []  # not migrated yet (build_app with migrate=False on an old database)
    return [(t, i, lang) for t, i, lang in rows]
