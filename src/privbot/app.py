"""The one object built from settings: database, understanding, reply templates, signals.

Nothing in privbot keeps module-level state; every channel, worker, command and test gets
an `App` handed in (tests build their own).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from privbot import db
from privbot.config import ConfigError, Settings
from privbot.mail.oauth import TokenSource
from privbot.models import Example
from privbot.ops.health import Probes
from privbot.ops.metrics import Metrics, new_metrics
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
    # This App's Prometheus registry (ops/metrics.py) and the readiness checks of the parts this
    # process runs (ops/health.py; serve adds them).
    metrics: Metrics = field(default_factory=new_metrics)
    probes: Probes = field(default_factory=Probes)
    # OAuth access tokens for IMAP and SMTP logins (mail/oauth.py), None without OAuth.
    tokens: TokenSource | None = None

    def close(self) -> None:
        self.engine.dispose()
        if self.tokens is not None:
            self.tokens.close()


class LiveClassifier:
    """The classifier, rebuilt when staff corrections add examples: they count from then on,
    in this process at once and in every other at its next `refresh` (the processor loop)."""

    def __init__(
        self,
        current: Classifier,
        rebuild: Callable[[list[tuple[str, str, str]]], Classifier] | None = None,
        seen: int = 0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._current = current
        self._rebuild = rebuild
        self._seen = seen  # the newest example id built in
        self._lock = threading.Lock()
        self._observe = observe  # each classification's seconds (the latency histogram)

    @property
    def intents(self) -> Intents:
        return self._current.intents

    def classify(self, new_text: str, subject: str = "", forwarded: str = "") -> Classification:
        if self._observe is None:
            return self._current.classify(new_text, subject, forwarded)
        started = time.perf_counter()
        try:
            return self._current.classify(new_text, subject, forwarded)
        finally:
            self._observe(time.perf_counter() - started)

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


# Beside the example bank (or in PRIVBOT_MODEL_CACHE_DIR): a trained model, named by the
# fingerprint of its inputs (so two versions running side by side, as in a rolling upgrade,
# do not overwrite each other's).
MODEL_CACHE = ".model-{key}.pickle"


def model_cache_dir(settings: Settings) -> Path:
    """Where trained models are cached: the setting, else beside the example bank."""
    if settings.model_cache_dir:
        return Path(settings.model_cache_dir)
    return Path(settings.intents_dir or data_folder("intents")) / "examples"


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
                model_cache_dir(settings) / MODEL_CACHE.format(key=key),
            )
    except (IntentsError, PolicyError, BlindSetError) as exc:
        raise ConfigError(str(exc)) from None
    replies = load_replies(replies_dir, intents=intents.names)
    return replies, policy, classifier


# Libraries that write message content at DEBUG: aiosmtpd (the SMTP receiver) every line of
# DATA, imapclient every IMAP response, fetched mail included. Debug logging must never
# write mail, so these stay at INFO at least, whatever the root level (a level, which their
# child loggers inherit; a filter would not reach them), and as quiet as the root where it
# asks for less (`--log-level warning` hides their INFO lines too).
CONTENT_LOGGERS = ("mail.log", "imapclient")


def quiet_content_loggers() -> None:
    # From the root's level now, not from their own: each App sets them afresh.
    level = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
    for name in CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(level)


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
    metrics = new_metrics(sessions)
    live = LiveClassifier(classifier, rebuild, seen, metrics.classify_seconds.observe)
    sent_log = SentLog.beside(settings.database_url)
    tokens = TokenSource.from_settings(settings)
    return App(
        settings, engine, sessions, replies, policy, live, sent_log, metrics=metrics, tokens=tokens
    )


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
