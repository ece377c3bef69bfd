"""Running it: the readiness checks (`health.py`), Prometheus metrics (`metrics.py`) and the
log format (`logs.py`)."""
