"""Running the web app with uvicorn in a thread, beside the mail channels, stoppable."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from privbot.app import App
from privbot.web.app import create_app

log = logging.getLogger(__name__)


@dataclass
class WebServer:
    app: App
    host: str
    port: int
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _socket: socket.socket | None = field(default=None, repr=False)

    def start(self) -> WebServer:
        """Bind now (so a taken port is an error here, not a silent dead thread), then serve."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it (Linux): without it a response written as headers
        # then body waits ~40 ms for the client's delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        self._socket = sock
        self.port = sock.getsockname()[1]
        # proxy_headers off: uvicorn would believe X-Forwarded-For from loopback (or from
        # FORWARDED_ALLOW_IPS); only PRIVBOT_TRUSTED_PROXIES decides that (web.security).
        # log_config None: uvicorn's lines go through privbot's handler (text or JSON) rather
        # than a console handler of uvicorn's own.
        config = uvicorn.Config(
            create_app(self.app), log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=5, proxy_headers=False, log_config=None,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="privbot-web", daemon=True
        )
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return bool(self._server and self._server.started)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
