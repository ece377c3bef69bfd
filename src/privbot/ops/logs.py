"""Where log lines go and how they look: plain text (the default) or one JSON object a line.

JSON (PRIVBOT_LOG_FORMAT=json, python-json-logger) has `time` (ISO 8601, UTC), `level`,
`logger` and `message`, plus the ids the code passes as `extra` (`message_id`, `ticket_id`,
`outbox_id`) and `exc_info` for a traceback. Nothing else is added: what the text format
would not write (mail, chat or reply text), the JSON does not either.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "{levelname}{name}{message}"
RENAMED = {"levelname": "level", "name": "logger"}


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root logger writes to stderr at `level`, as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, style="{", rename_fields=RENAMED, timestamp="time")
        )
        # Whatever else Python would print to stderr becomes a JSON line too.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_crash
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("privbot").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("privbot").critical(
        "thread %s crashed", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )
