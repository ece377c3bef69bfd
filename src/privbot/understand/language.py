"""Text normalisation, and the language a mail is written in (py3langid)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier
from py3langid.modelio import load_model

_WORD = re.compile(r"\w+")
DEFAULT_LANGUAGE = "en"


def normalise(text: str) -> str:
    """Casefold and strip accents, so "Löschung", "loschung" and "LÖSCHUNG" compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    if decomposed.isascii():  # no accents to strip: the common case, and the cheap one
        return decomposed
    # Look up each distinct character once, not every occurrence.
    marks = {ord(ch): None for ch in set(decomposed) if unicodedata.combining(ch)}
    return decomposed.translate(marks) if marks else decomposed


def tokenise(text: str) -> list[str]:
    """Word tokens of already normalised text (apostrophes split: "don't" -> don, t)."""
    return _WORD.findall(text)


def has_cjk(text: str) -> bool:
    """True when the text holds Han or kana characters (no spaces between words there)."""
    return not text.isascii() and any(0x3040 <= ord(ch) <= 0x9FFF for ch in text)


@dataclass(frozen=True)
class LanguageGuesser:
    """Guesses an ISO 639-1 code with py3langid (a kept library: on the example bank it was
    right for 99.0% of mails, the stopword counter it replaced for 70.7%), restricted to the
    languages privbot knows."""

    codes: tuple[str, ...]
    default: str = DEFAULT_LANGUAGE

    @classmethod
    def build(cls, codes: Iterable[str]) -> LanguageGuesser:
        return cls(tuple(dict.fromkeys(codes)))

    def guess(self, text: str) -> str:
        # The opening is plenty and keeps long mails cheap.
        opening = text[:2000]
        if not any(ch.isalpha() for ch in opening):
            return self.default
        code = _identifier(self.codes).classify(opening)[0]
        return str(code) if code in self.codes else self.default


@lru_cache(maxsize=8)
def _identifier(codes: tuple[str, ...]) -> LanguageIdentifier:
    """py3langid's model for `codes` only, loaded once per set (a few tenths of a second).

    What `set_languages` would choose, built from the restricted columns alone: the full
    model (142 classes, 28 MB) would otherwise stay in every process beside them.
    """
    ptc, pc, classes, nextmove, row, output = load_model(MODEL_DIR / MODEL_FILE)
    keep = [i for i, c in enumerate(classes) if c in codes]
    return LanguageIdentifier(
        np.asarray(ptc)[:, keep], np.asarray(pc)[keep], [classes[i] for i in keep],
        nextmove, output, tk_row=row,
    )  # fmt: skip
