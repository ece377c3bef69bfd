"""The `privbot` command (`main.py`), its staff commands, listings and the demo."""
