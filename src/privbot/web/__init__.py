"""The web app: the staff review queue and the public privacy chat (one ASGI app)."""

from privbot.web.app import create_app

__all__ = ["create_app"]
