"""Text normalisation and a small, dependency-free language guess.

Everything the guess knows (stopwords, scripts) comes from `intents/_languages.toml`;
this module only counts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
# Scripts we can tell apart by code point; latin needs stopwords to split further.
_SCRIPT_RANGES: tuple[tuple[str, int, int], ...] = (
    ("greek", 0x0370, 0x03FF),
    ("cyrillic", 0x0400, 0x04FF),
    ("kana", 0x3040, 0x30FF),
    ("han", 0x4E00, 0x9FFF),
    ("hangul", 0xAC00, 0xD7AF),
)
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


def script_of(ch: str) -> str | None:
    code = ord(ch)
    for name, low, high in _SCRIPT_RANGES:
        if low <= code <= high:
            return name
    if ch.isalpha():
        return "latin"
    return None


@dataclass(frozen=True)
class LanguageGuesser:
    """Guesses an ISO 639-1 code from script counts, then stopword hits for latin text."""

    scripts: Mapping[str, tuple[str, ...]]  # script -> languages written in it
    stopwords: Mapping[str, frozenset[str]]  # language -> normalised stopwords
    default: str = DEFAULT_LANGUAGE

    @classmethod
    def build(cls, languages: Iterable[tuple[str, str, Iterable[str]]]) -> LanguageGuesser:
        """From (code, script, stopwords) triples."""
        scripts: dict[str, list[str]] = {}
        stopwords: dict[str, frozenset[str]] = {}
        for code, script, words in languages:
            scripts.setdefault(script, []).append(code)
            stopwords[code] = frozenset(normalise(w) for w in words)
        return cls({k: tuple(v) for k, v in scripts.items()}, stopwords)

    def guess(self, text: str) -> str:
        counts: dict[str, int] = {}
        # The opening is plenty and keeps long mails cheap; each distinct character once.
        for ch, n in Counter(text[:4000]).items():
            script = script_of(ch)
            if script:
                counts[script] = counts.get(script, 0) + n
        total = sum(counts.values())
        if not total:
            return self.default
        # Japanese mixes kana with Han: any real amount of kana means Japanese.
        if counts.get("kana", 0) >= 0.1 * total and "kana" in self.scripts:
            return self.scripts["kana"][0]
        best_script = max(counts, key=lambda s: counts[s])
        if best_script != "latin" and counts[best_script] >= 0.3 * total:
            codes = self.scripts.get(best_script, ())
            if len(codes) == 1:
                return codes[0]
            if codes:
                return self._by_stopwords(text, codes)
        return self._by_stopwords(text, self.scripts.get("latin", ()))

    def _by_stopwords(self, text: str, codes: Iterable[str]) -> str:
        tokens = tokenise(normalise(text[:4000]))
        best, best_hits = self.default, 0
        for code in codes:
            words = self.stopwords.get(code, frozenset())
            hits = sum(1 for t in tokens if t in words)
            if hits > best_hits:
                best, best_hits = code, hits
        return best
