"""Understanding a mail: language, intents, opt-out scopes, policy citations.

Pure functions over data files (`intents/`, `replies/policy.md`); no database, no I/O
beyond loading those files.
"""

from privbot.understand.classify import Classification, Classifier, Match
from privbot.understand.intents import Intent, Intents, IntentsError, Language, load_intents
from privbot.understand.language import LanguageGuesser, normalise, tokenise

__all__ = [
    "Classification",
    "Classifier",
    "Intent",
    "Intents",
    "IntentsError",
    "Language",
    "LanguageGuesser",
    "Match",
    "load_intents",
    "normalise",
    "tokenise",
]
