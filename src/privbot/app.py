"""The one object built from settings: database, reply templates, wake-up signals.

Nothing in privbot keeps module-level state; every channel, worker, command and test gets
an `App` handed in (tests build their own).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from privbot import db
from privbot.config import Settings
from privbot.replies import Replies, load_replies


@dataclass(frozen=True)
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    replies: Replies
    # Set when there is new work, so idle workers wake at once instead of at their next poll.
    inbound_ready: threading.Event = field(default_factory=threading.Event)
    outbox_ready: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.engine.dispose()


def data_folder(name: str) -> Path:
    """Where a data folder (replies/, intents/) lives: the checkout's top level, else the cwd."""
    checkout = Path(__file__).resolve().parents[2] / name
    return checkout if checkout.is_dir() else Path.cwd() / name


def build_app(settings: Settings, *, migrate: bool = True) -> App:
    replies_dir = Path(settings.extra.get("REPLIES_DIR") or data_folder("replies"))
    replies = load_replies(replies_dir)
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    return App(settings, engine, db.make_sessions(engine), replies)
