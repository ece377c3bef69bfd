"""privbot's benchmark suite: privbot measured against the limits of its own servers.

Run from the repository root: ``.venv/bin/python -m bench [--quick] [--json FILE]``.
It starts its own Dovecot, capture relay and PostgreSQL database (``testing/servers.py``).
"""
