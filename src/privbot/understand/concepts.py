"""Concepts, not surface phrases: small per-language word lists (`intents/_concepts.toml`),
matched after Snowball stemming, that say what a sentence is about (an action such as
delete or stop, an object such as the account or the newsletter, a modifier such as a
negation or a question).

A concept is the same in every language, so what the learned layer learns from a German
example ("act_delete + obj_account") carries to Finnish. Entries ending in `*` match any
word starting with them (for the inflection a stemmer misses); several words match in a row.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import Stemmer  # PyStemmer: the Snowball stemmers, compiled
from rapidfuzz.distance import DamerauLevenshtein

from privbot.understand.intents import IntentsError
from privbot.understand.language import normalise, tokenise

# ISO 639-1 -> Snowball algorithm; every language privbot reads has one.
STEMMERS = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
    "nl": "dutch", "pt": "portuguese", "pl": "polish", "sv": "swedish", "da": "danish",
    "cs": "czech", "ro": "romanian", "el": "greek", "hu": "hungarian", "fi": "finnish",
}  # fmt: skip
PREFIX_KEY = 3
# A word of at least this many letters (stemmed) that matches no entry is read as the
# one-word entry one edit away, if there is one: people type "remvoe", "delet", "unsubcribe".
TYPO_MIN = 5
NEAR_CACHE = 100_000  # prefix entries are indexed by their first 3 letters (2-letter ones whole)
FALLBACK = "en"  # English words are matched in every mail: people mix it in everywhere
# Languages that write compounds as one word ("Kontolöschung", "fióktörlés", "tilinpoisto"),
# and the linking letters between a compound's parts ("Daten-s-chutz" has none; "Kunden-").
COMPOUNDING = {
    "de": ("", "s", "es", "n", "en", "e"), "nl": ("", "s", "en", "e"), "sv": ("", "s"),
    "da": ("", "s", "e"), "fi": ("", "n"), "hu": ("",),
}  # fmt: skip
COMPOUND_MIN = 8  # a shorter word is not split
PART_MIN = 4  # letters of each part; shorter ones match by chance
PARTS = ("act_", "obj_", "state_", "topic_")  # the concepts a compound's parts can name


@dataclass(frozen=True)
class _Entry:
    concept: str
    words: tuple[str, ...]  # stems, or prefixes where `prefix[i]`
    prefix: tuple[bool, ...]


@dataclass(frozen=True)
class Concepts:
    """The lexicon, compiled: per language, entries indexed by their first word."""

    names: tuple[str, ...]
    by_language: dict[str, dict[str, tuple[_Entry, ...]]]  # lang -> first stem -> entries
    prefixes: dict[str, dict[str, tuple[_Entry, ...]]]  # lang -> first 3 letters -> entries
    # One-word entries by the first letter of their stem, for a typo's nearest entry.
    singles: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _near: dict[tuple[str, str], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )
    _compounds: dict[tuple[str, str], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def find(self, tokens: Sequence[str], language: str) -> list[tuple[str, int]]:
        """(concept, token index) for every entry found in normalised `tokens`."""
        found: list[tuple[str, int]] = []
        for lang in dict.fromkeys((language, FALLBACK)):
            index = self.by_language.get(lang)
            if index is None:
                continue
            stems = [stem(lang, t) for t in tokens]
            for i in range(len(tokens)):
                before = len(found)
                for entry in index.get(stems[i], ()):
                    if _matches(entry, tokens, stems, i):
                        found.append((entry.concept, i))
                short = self.prefixes[lang].get(tokens[i][:2], ())
                for entry in (*short, *self.prefixes[lang].get(tokens[i][:PREFIX_KEY], ())):
                    if _matches(entry, tokens, stems, i):
                        found.append((entry.concept, i))
                if lang in COMPOUNDING:
                    # Also where the word's start matched a prefix ("fiok*" in "fióktörlés").
                    found += [(c, i) for c in self._compound(lang, tokens[i])]
                if len(found) == before and len(stems[i]) >= TYPO_MIN:
                    near = self._nearest(lang, stems[i])
                    found += [
                        (e.concept, i) for e in index.get(near or "", ()) if len(e.words) == 1
                    ]
        return list(dict.fromkeys(found))

    def languages_of(self, tokens: Sequence[str]) -> frozenset[str]:
        """The languages whose lexicon has an action or object word among `tokens`, as
        written (no typo matching): for a text too short for the language model."""
        found = set()
        for lang, index in self.by_language.items():
            stems = [stem(lang, t) for t in tokens]
            prefixed = self.prefixes.get(lang, {})
            if any(
                e.concept.startswith(("act_", "obj_")) and _matches(e, tokens, stems, i)
                for i in range(len(tokens))
                for e in (
                    *index.get(stems[i], ()),
                    *prefixed.get(tokens[i][:2], ()),
                    *prefixed.get(tokens[i][:PREFIX_KEY], ()),
                )
            ):
                found.add(lang)
        return frozenset(found)

    def _compound(self, language: str, word: str) -> tuple[str, ...]:
        """The concepts of a compound's parts: its head (the longest ending that is an
        entry) and what is left before it, less a linking letter ("kontolöschung": account,
        delete). Nothing when the head is no entry: a modifier alone says too little."""
        key = (language, word)
        if key not in self._compounds:
            if len(self._compounds) > NEAR_CACHE:
                self._compounds.clear()
            found: tuple[str, ...] = ()
            if len(word) >= COMPOUND_MIN:
                for cut in range(PART_MIN, len(word) - PART_MIN + 1):
                    head = self._part(language, word[cut:])
                    if head:
                        left = word[:cut]
                        modifier = next(
                            (
                                part
                                for link in COMPOUNDING[language]
                                if left.endswith(link)
                                and len(left) - len(link) >= PART_MIN
                                and (part := self._part(language, left[: len(left) - len(link)]))
                            ),
                            (),
                        )
                        found = tuple(dict.fromkeys((*head, *modifier)))
                        break
            self._compounds[key] = found
        return self._compounds[key]

    def _part(self, language: str, part: str) -> tuple[str, ...]:
        """The concepts one-word entries give a part of a compound."""
        entries = (
            *self.by_language[language].get(stem(language, part), ()),
            *self.prefixes[language].get(part[:2], ()),
            *self.prefixes[language].get(part[:PREFIX_KEY], ()),
        )
        return tuple(
            e.concept
            for e in entries
            if len(e.words) == 1
            and e.concept.startswith(PARTS)
            and (not e.prefix[0] or (len(e.words[0]) >= PART_MIN and part.startswith(e.words[0])))
        )

    def _nearest(self, language: str, word: str) -> str | None:
        """The one-word entry a typo is one edit from ("remvoe": remove), if any."""
        key = (language, word)
        if key not in self._near:
            if len(self._near) > NEAR_CACHE:
                self._near.clear()
            candidates = self.singles.get(language, {}).get(word[0], ())
            self._near[key] = next(
                (
                    c
                    for c in candidates
                    if abs(len(c) - len(word)) <= 1
                    and DamerauLevenshtein.distance(c, word, score_cutoff=1) <= 1
                ),
                None,
            )
        return self._near[key]


def _matches(entry: _Entry, tokens: Sequence[str], stems: Sequence[str], start: int) -> bool:
    if start + len(entry.words) > len(tokens):
        return False
    for k, (word, is_prefix) in enumerate(zip(entry.words, entry.prefix, strict=True)):
        if is_prefix:
            if not tokens[start + k].startswith(word):
                return False
        elif stems[start + k] != word:
            return False
    return True


@lru_cache(maxsize=200_000)
def stem(language: str, token: str) -> str:
    """A normalised token's Snowball stem (cached: mail repeats its words)."""
    return _stemmer(language).stemWord(token)


@lru_cache(maxsize=32)
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(STEMMERS.get(language, "english"))


def load_concepts(path: Path) -> Concepts:
    """Read and compile `concepts.toml`; IntentsError names the file and key on a problem."""
    where = f"{path.parent.name}/{path.name}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntentsError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise IntentsError(f"{where}: invalid TOML: {exc}") from None
    by_language: dict[str, dict[str, list[_Entry]]] = {lang: {} for lang in STEMMERS}
    prefixes: dict[str, dict[str, list[_Entry]]] = {lang: {} for lang in STEMMERS}
    names: list[str] = []
    for concept, table in data.items():
        if not isinstance(table, dict):
            raise IntentsError(f"{where}: {concept}: must be a table")
        names.append(concept)
        for lang, entries in table.items():
            if lang == "about":
                continue
            if lang not in STEMMERS:
                raise IntentsError(f"{where}: {concept}.{lang}: unknown language")
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise IntentsError(f"{where}: {concept}.{lang}: must be a list of strings")
            for text in entries:
                entry = _compile(concept, lang, text)
                if entry is None:
                    continue  # nothing left after normalising (punctuation only)
                if entry.prefix[0]:
                    if len(entry.words[0]) < 2:
                        raise IntentsError(f"{where}: {concept}.{lang}: prefix {text!r} too short")
                    prefixes[lang].setdefault(entry.words[0][:PREFIX_KEY], []).append(entry)
                else:
                    by_language[lang].setdefault(entry.words[0], []).append(entry)
    singles: dict[str, dict[str, list[str]]] = {lang: {} for lang in STEMMERS}
    for lang, idx in by_language.items():
        for first, entries in idx.items():
            if len(first) >= TYPO_MIN and any(len(e.words) == 1 for e in entries):
                singles[lang].setdefault(first[0], []).append(first)
    return Concepts(
        tuple(names),
        {lang: {k: tuple(v) for k, v in idx.items()} for lang, idx in by_language.items()},
        {lang: {k: tuple(v) for k, v in idx.items()} for lang, idx in prefixes.items()},
        {lang: {k: tuple(sorted(v)) for k, v in idx.items()} for lang, idx in singles.items()},
    )


def _compile(concept: str, language: str, text: str) -> _Entry | None:
    words: list[str] = []
    prefix: list[bool] = []
    for raw in text.split():
        is_prefix = raw.endswith("*")
        for token in tokenise(normalise(raw.rstrip("*"))):
            words.append(token if is_prefix else stem(language, token))
            prefix.append(is_prefix)
    if not words:
        return None
    return _Entry(concept, tuple(words), tuple(prefix))
