"""privbot: the privacy support bot on JunoCloud's privacy mailbox."""

__version__ = "0.1.0"
