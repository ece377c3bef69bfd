"""The one object built from settings: database, understanding, reply templates, signals.

Nothing in privbot keeps module-level state; every channel, worker, command and test gets
an `App` handed in (tests build their own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from privbot import db
from privbot.config import ConfigError, Settings
from privbot.models import Example
from privbot.replies import Replies, load_replies
from privbot.sentlog import SentLog
from privbot.understand import Classification, Classifier, Intents, IntentsError, load_intents
from privbot.understand.blind import BlindSetError
from privbot.understand.concepts import load_concepts
from privbot.understand.learned import inputs_key, read_bank, staff_examples
from privbot.understand.policy import Policy, PolicyError, load_policy, load_topics


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    replies: Replies
    policy: Policy
    classifier: LiveClassifier
    # Replies the relay accepted, before the database knows (SQLite only; see sentlog.py).
    sent_log: SentLog | None = None
    # Set when there is new work, so idle workers wake at once instead of at their next poll.
    inbound_ready: threading.Event = field(default_factory=threading.Event)
    outbox_ready: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.engine.dispose()


class LiveClassifier:
    """The classifier, rebuilt when staff corrections add examples: they count from then on,
    in this process at once and in every other at its next `refresh` (the processor loop)."""

    def __init__(
        self,
        current: Classifier,
        rebuild: Callable[[list[tuple[str, str, str]]], Classifier] | None = None,
        seen: int = 0,
    ) -> None:
        self._current = current
        self._rebuild = rebuild
        self._seen = seen  # the newest example id built in
        self._lock = threading.Lock()

    @property
    def intents(self) -> Intents:
        return self._current.intents

    def classify(self, new_text: str, subject: str = "") -> Classification:
        return self._current.classify(new_text, subject)

    def refresh(self, sessions: sessionmaker[Session]) -> bool:
        """Rebuild if staff added examples since; True if it did."""
        if self._rebuild is None:
            return False
        with sessions() as session:
            try:
                newest = session.scalar(select(func.max(Example.id))) or 0
            except (OperationalError, ProgrammingError):
                return False
        if newest <= self._seen:
            return False
        with self._lock:
            if newest > self._seen:
                self._current = self._rebuild(_staff_examples(sessions))
                self._seen = newest
        return True


# Beside the example bank: a trained model, named by the fingerprint of its inputs (so two
# versions running side by side, as in a rolling upgrade, do not overwrite each other's).
MODEL_CACHE = ".model-{key}.pickle"


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
    replies_dir = Path(settings.replies_dir or data_folder("replies"))
    intents_dir = Path(settings.intents_dir or data_folder("intents"))
    try:
        intents = load_intents(intents_dir)
        policy = load_policy(replies_dir / "policy.md")
        topics = load_topics(replies_dir / "policy_topics.toml")
        # An intent since removed from intents/ must not stop start-up: its examples wait.
        known = [e for e in extra_examples if e[1] in intents.names]
        classifier = Classifier.build(intents, policy, topics, extra_examples=known)
        bank = intents_dir / "examples"
        if (intents_dir / "_concepts.toml").is_file() and any(bank.glob("*.jsonl")):
            concepts_file = intents_dir / "_concepts.toml"
            # Every intent file (the concepts' _concepts.toml among them) and the bank.
            key = inputs_key([*intents_dir.glob("*.toml"), *bank.glob("*.jsonl")], known)
            classifier = classifier.learn(
                load_concepts(concepts_file),
                lambda: [*read_bank(bank), *staff_examples(known)],
                key,
                bank / MODEL_CACHE.format(key=key),
            )
    except (IntentsError, PolicyError, BlindSetError) as exc:
        raise ConfigError(str(exc)) from None
    replies = load_replies(replies_dir, intents=intents.names)
    return replies, policy, classifier


# Libraries that write message content at DEBUG: aiosmtpd (the SMTP receiver) every line of
# DATA, imapclient every IMAP response, fetched mail included. Debug logging must never
# write mail, so these stay at INFO at most, whatever the root level.
CONTENT_LOGGERS = ("mail.log", "imapclient")


def quiet_content_loggers() -> None:
    for name in CONTENT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))


def build_app(settings: Settings, *, migrate: bool = True) -> App:
    quiet_content_loggers()  # every process that handles mail builds an App first
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    sessions = db.make_sessions(engine)
    examples = _staff_examples(sessions)
    replies, policy, classifier = load_understanding(settings, examples)

    def rebuild(newer: list[tuple[str, str, str]]) -> Classifier:
        return load_understanding(settings, newer)[2]

    with sessions() as session:
        try:
            seen = session.scalar(select(func.max(Example.id))) or 0
        except (OperationalError, ProgrammingError):
            seen = 0
    live = LiveClassifier(classifier, rebuild, seen)
    sent_log = SentLog.beside(settings.database_url)
    return App(settings, engine, sessions, replies, policy, live, sent_log)


def _staff_examples(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    """Reclassifications staff made, oldest first: examples the classifier learns from."""
    with sessions() as session:
        try:
            rows = session.execute(
                select(Example.text, Example.intent, Example.language).order_by(Example.id)
            ).all()
        except (OperationalError, ProgrammingError):
            return []  # not migrated yet (build_app with migrate=False on an old database)
    return [(t, i, lang) for t, i, lang in rows]
