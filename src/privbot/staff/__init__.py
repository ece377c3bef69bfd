"""What staff do and see: actions on tickets, the queue and ticket views, accounts and tokens."""
