"""The outbox: replies leave from a table (`queue.py` puts them there, `sender.py` sends)."""
