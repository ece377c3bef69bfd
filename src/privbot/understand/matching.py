"""Compiled phrase matching: the hot path of the classifier.

A phrase is a sequence of words; the words must appear in order, with at most `MAX_GAP`
other words between two of them (none before a number, so "art* 15" means "Art. 15").
"word*" matches any word starting with "word". Phrases with Chinese or Japanese characters
match as substrings, since those languages do not separate words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from privbot.understand.language import has_cjk, normalise, tokenise

MAX_GAP = 4
MIN_PREFIX = 3


@dataclass(frozen=True)
class Phrase:
    text: str  # as written in the data file, for the staff's "why" view
    intent: str
    kind: str  # "strong" | "phrases" | "weak" | a group name such as "scopes.all"
    language: str
    weight: float
    words: tuple[tuple[str, bool], ...]  # (normalised word, is_prefix)
    substring: str = ""  # for CJK phrases


@dataclass(frozen=True)
class Hit:
    phrase: Phrase
    start: int  # token index of the first word (0 for substring hits)
    end: int  # token index of the last word
    positions: tuple[int, ...]


def compile_phrase(
    text: str, intent: str, kind: str, language: str, weight: float
) -> Phrase | None:
    norm = normalise(text)
    if has_cjk(norm):
        return Phrase(text, intent, kind, language, weight, (), norm.replace(" ", ""))
    words: list[tuple[str, bool]] = []
    for piece in norm.split():
        prefix = piece.endswith("*")
        tokens = tokenise(piece)
        if not tokens:
            continue
        words.extend((t, False) for t in tokens[:-1])
        last = tokens[-1]
        words.append((last, prefix and len(last) >= MIN_PREFIX))
    if not words:
        return None
    return Phrase(text, intent, kind, language, weight, tuple(words))


@dataclass(frozen=True)
class Matcher:
    """Indexes phrases by word so that a sentence is checked against few candidates."""

    phrases: tuple[Phrase, ...]
    exact: dict[str, tuple[int, ...]]  # word -> pattern ids
    prefix: dict[str, tuple[int, ...]]  # word prefix -> pattern ids
    units: tuple[tuple[int, ...], ...]  # phrase -> pattern id per word
    anchors: dict[int, tuple[int, ...]]  # pattern id -> phrases anchored on it
    substrings: tuple[int, ...]  # phrases matched as substrings
    max_prefix: int

    @classmethod
    def build(cls, phrases: Iterable[Phrase]) -> Matcher:
        phrases = tuple(phrases)
        pattern_ids: dict[tuple[str, bool], int] = {}
        units: list[tuple[int, ...]] = []
        substrings: list[int] = []
        for i, phrase in enumerate(phrases):
            if phrase.substring:
                substrings.append(i)
            units.append(tuple(pattern_ids.setdefault(w, len(pattern_ids)) for w in phrase.words))
        usage: dict[int, int] = {}
        for u in units:
            for pid in set(u):
                usage[pid] = usage.get(pid, 0) + 1
        anchors: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            if u:
                # Anchor on the rarest word so common words ("data") do not wake many phrases.
                anchor = min(u, key=lambda pid: usage[pid])
                anchors.setdefault(anchor, []).append(i)
        exact: dict[str, list[int]] = {}
        prefix: dict[str, list[int]] = {}
        for (word, is_prefix), pid in pattern_ids.items():
            (prefix if is_prefix else exact).setdefault(word, []).append(pid)
        return cls(
            phrases,
            {k: tuple(v) for k, v in exact.items()},
            {k: tuple(v) for k, v in prefix.items()},
            tuple(units),
            {k: tuple(v) for k, v in anchors.items()},
            tuple(substrings),
            max((len(k) for k in prefix), default=0),
        )

    def match(self, tokens: Sequence[str], norm_text: str = "") -> list[Hit]:
        """All phrases found in one sentence (tokens from `tokenise(normalise(...))`)."""
        positions: dict[int, list[int]] = {}
        for i, token in enumerate(tokens):
            for pid in self.exact.get(token, ()):
                positions.setdefault(pid, []).append(i)
            for k in range(MIN_PREFIX, min(len(token), self.max_prefix) + 1):
                for pid in self.prefix.get(token[:k], ()):
                    positions.setdefault(pid, []).append(i)
        hits: list[Hit] = []
        seen: set[int] = set()
        for pid in positions:
            for index in self.anchors.get(pid, ()):
                if index in seen:
                    continue
                seen.add(index)
                unit = self.units[index]
                if all(p in positions for p in unit):
                    found = _find(unit, self.phrases[index].words, positions)
                    if found:
                        hits.append(Hit(self.phrases[index], found[0], found[-1], found))
        if self.substrings and norm_text and has_cjk(norm_text):
            compact = norm_text.replace(" ", "")
            for index in self.substrings:
                if self.phrases[index].substring in compact:
                    hits.append(Hit(self.phrases[index], 0, 0, ()))
        return hits


def _find(
    unit: tuple[int, ...], words: tuple[tuple[str, bool], ...], positions: dict[int, list[int]]
) -> tuple[int, ...] | None:
    """First in-order occurrence with bounded gaps (depth-first; phrases are short)."""

    def extend(k: int, prev: int, acc: tuple[int, ...]) -> tuple[int, ...] | None:
        if k == len(unit):
            return acc
        gap = 0 if words[k][0].isdigit() else MAX_GAP
        for p in positions[unit[k]]:
            if prev < p <= prev + gap + 1:
                done = extend(k + 1, p, (*acc, p))
                if done:
                    return done
            elif p > prev + gap + 1:
                break
        return None

    for start in positions[unit[0]]:
        found = extend(1, start, (start,))
        if found:
            return found
    return None
