"""Deliberate crashes at named points, for the crash-consistency harness.

Off unless PRIVBOT_CRASH_POINTS names points (e.g. "after_store:0.05,after_send:0.02"):
then at each such point privbot SIGKILLs itself with that probability, exactly as a
power cut or the OOM killer would stop it. The harness restarts it and checks that
nothing was lost or done twice.
"""

from __future__ import annotations

import logging
import os
import random
import signal

from privbot.config import Settings

log = logging.getLogger(__name__)


def crash_point(settings: Settings, name: str) -> None:
    chance = settings.crash_points.get(name)
    if chance and random.random() < chance:
        log.critical("crash point %s: killing myself", name)  # the harness counts these
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
