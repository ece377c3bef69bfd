"""`privbot serve`: every configured channel and worker in one process, until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from privbot import pipeline, retention
from privbot.app import App
from privbot.channels.imap import ImapWatcher
from privbot.channels.smtp import listening, start_receiver
from privbot.ops.metrics import MetricsListener
from privbot.outbox import sender
from privbot.staff import daily, notify
from privbot.web.server import WebServer

log = logging.getLogger(__name__)


def run_processor(app: App, stop: threading.Event, poll: float = 2.0) -> None:
    """Process stored messages still waiting: SMTP intake, and anything a crash left behind."""
    while not stop.is_set():
        try:
            app.classifier.refresh(app.sessions)  # corrections staff made in another process
            outcomes = pipeline.process_pending(app)
        except Exception:
            log.exception("processor: round failed")
            outcomes = []
        if not outcomes:
            app.inbound_ready.wait(poll)
            app.inbound_ready.clear()


@dataclass
class Service:
    """The running parts; `stop()` ends them all and waits."""

    app: App
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    stoppers: list[Callable[[], Any]] = field(default_factory=list)

    def start(self) -> Service:
        s = self.app.settings
        notify.check(self.app)  # the staff mail templates: a broken one stops start-up
        self._thread("processor", run_processor, self.app, self.stop_event)
        self._thread("retention", retention.run_daily, self.app, self.stop_event)
        if s.staff_notify != "off":
            self._thread("staff-daily", daily.run_daily, self.app, self.stop_event)
        if s.smtp is not None:
            self._thread("outbox", sender.run_sender, self.app, self.stop_event)
        if s.imap is not None:
            watcher = ImapWatcher(self.app)
            self.stoppers.append(watcher.stop)
            self.app.probes.add("imap", watcher.online.is_set)  # /readyz
            self._thread("imap", watcher.run)
        if s.listen is not None:
            controller = start_receiver(self.app)
            self.stoppers.append(controller.stop)
            self.app.probes.add("smtp", lambda: listening(controller))
        self._start_web()
        self._start_metrics()
        return self

    def _start_metrics(self) -> None:
        # Like the web app: monitoring that cannot listen must not stop the mail.
        if self.app.settings.metrics_listen is None:
            return
        host, port = self.app.settings.metrics_listen
        try:
            stop = MetricsListener(self.app.metrics.registry, host, port).start()
        except OSError as exc:
            log.error("metrics not served: cannot listen on %s:%s (PRIVBOT_METRICS_LISTEN): %s",
                      host, port, exc.strerror or exc)  # fmt: skip
            return
        self.stoppers.append(stop)

    def _start_web(self) -> None:
        # The web app is secondary: if its port is taken, mail keeps flowing and the log
        # says why the queue is not reachable.
        host, port = self.app.settings.web
        try:
            web = WebServer(self.app, host, port).start()
        except OSError as exc:
            log.error("web app not started: cannot listen on %s:%s (PRIVBOT_WEB): %s",
                      host, port, exc.strerror or exc)  # fmt: skip
            return
        self.stoppers.append(web.stop)

    def stop(self) -> None:
        self.stop_event.set()
        for stopper in self.stoppers:
            stopper()
        # Wake sleeping workers so they notice the stop now.
        self.app.inbound_ready.set()
        self.app.outbox_ready.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"privbot-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)


def describe(app: App) -> str:
    s = app.settings
    parts = [f"address {s.address}"]
    if s.imap:
        parts.append(f"IMAP {s.imap.host}:{s.imap.port}/{s.imap.folder}")
    if s.listen:
        parts.append(f"SMTP receiver {s.listen[0]}:{s.listen[1]}")
    parts.append(f"relay {s.smtp.host}:{s.smtp.port}" if s.smtp else "no relay: replies wait")
    parts.append(f"web http://{s.web[0]}:{s.web[1]}")
    if s.staff_notify != "off":
        parts.append(f"staff mail: {s.staff_notify}, daily from {s.staff_daily_hour:02d}:00 UTC")
    if s.metrics_listen:
        parts.append(f"metrics http://{s.metrics_listen[0]}:{s.metrics_listen[1]}/metrics")
    if (tokens := app.tokens) is not None:
        parts.append(f"OAuth {tokens.mechanism} ({tokens.grant}) from {tokens.endpoint}")
    return ", ".join(parts)


def serve_forever(app: App) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    stopped = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    service = Service(app).start()
    log.info("privbot serving: %s", describe(app))
    try:
        while not stopped.wait(1.0):
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("privbot stopped")
