"""The company's privacy policy: parsed into sections and clauses, and searched for answers.

The policy text is product data (`replies/policy.md`); nothing here knows its wording.
Headings are the short stand-alone lines, clauses the "(a) ..." lines. Citations always
quote a paragraph or clause exactly as written (markdown links reduced to their text).
Retrieval is a small BM25-style ranking over paragraphs and clauses, with a synonym list
from `replies/policy_topics.toml` so that "Gebühr" or "cost" can find "fee".
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from privbot.understand.language import normalise, tokenise

_CLAUSE = re.compile(r"^\(([a-z])\)\s+(.+)$", re.DOTALL)
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_TITLE = re.compile(r"^#{1,6}\s+(.+)$")
_MAX_HEADING_WORDS = 15


class PolicyError(ValueError):
    """The policy file is missing or cannot be split into sections."""


@dataclass(frozen=True)
class Clause:
    letter: str
    text: str  # without the "(a) " marker, exactly as in the policy


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...]
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class Citation:
    heading: str
    text: str  # a whole paragraph or clause, verbatim
    letter: str = ""  # the clause letter when `text` is a lettered clause
    score: float = 0.0


def heading_key(heading: str) -> str:
    """A heading as labels name it: the policy writes one with a colon ("...visitors:")."""
    return heading.strip().rstrip(":").strip().casefold()


@dataclass(frozen=True)
class Policy:
    sections: tuple[Section, ...]

    def section(self, heading: str) -> Section:
        for section in self.sections:
            if section.heading == heading:
                return section
        raise KeyError(heading)

    @property
    def headings(self) -> tuple[str, ...]:
        return tuple(s.heading for s in self.sections)


@dataclass(frozen=True)
class Topics:
    """Retrieval vocabulary (data): synonyms map a query word to policy words."""

    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    generic: frozenset[str] = frozenset()  # words that say little ("data", "information")
    stopwords: frozenset[str] = frozenset()
    min_score: float = 2.0
    relative_cutoff: float = 0.6


def load_policy(path: Path) -> Policy:
    """Parse the policy file; raise PolicyError naming the file and the problem."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from None
    return parse_policy(raw, source=str(path))


def parse_policy(raw: str, source: str = "<policy>") -> Policy:
    blocks = _blocks(raw)
    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    clauses: list[Clause] = []

    def flush() -> None:
        if heading is not None and (paragraphs or clauses):
            sections.append(Section(heading, tuple(paragraphs), tuple(clauses)))
        elif heading is not None:
            raise PolicyError(f"{source}: section {heading!r} has no text")

    for block in blocks:
        title = _TITLE.match(block)
        clause = _CLAUSE.match(block)
        if title or (not clause and _is_heading(block)):
            if heading is None and (paragraphs or clauses):
                raise PolicyError(f"{source}: text before the first heading or title")
            flush()
            heading = title.group(1).strip() if title else block
            paragraphs, clauses = [], []
        elif heading is None:
            raise PolicyError(f"{source}: text before the first heading or title: {block[:60]!r}")
        elif clause:
            clauses.append(Clause(clause.group(1), clause.group(2).strip()))
        else:
            paragraphs.append(block)
    flush()
    if len(sections) < 2:
        raise PolicyError(f"{source}: found {len(sections)} section(s); expected headings")
    return Policy(tuple(sections))


def _blocks(raw: str) -> list[str]:
    """Blank-line separated blocks, markdown links reduced to text, blockquotes dropped.

    The leading blockquote is the archive's editorial note, not the company's words.
    """
    blocks: list[str] = []
    for chunk in re.split(r"\n\s*\n", raw.replace("\r\n", "\n")):
        lines = [ln.strip() for ln in chunk.split("\n") if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(">")]
        if lines:
            blocks.append(_MD_LINK.sub(r"\1", " ".join(lines)))
    return blocks


def _is_heading(block: str) -> bool:
    """A short stand-alone line that is not a sentence: no comma, no closing punctuation."""
    words = block.split()
    return (
        0 < len(words) <= _MAX_HEADING_WORDS
        and block[0].isupper()
        and "," not in block
        and block[-1] not in ".;!?,"
    )


def load_topics(path: Path) -> Topics:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read topics: {exc}") from None
    synonyms_raw = data.get("synonyms", {})
    if not isinstance(synonyms_raw, dict):
        raise PolicyError(f"{path}: synonyms: must be a table")
    synonyms: dict[str, tuple[str, ...]] = {}
    for word, targets in synonyms_raw.items():
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise PolicyError(f"{path}: synonyms.{word}: must be a list of strings")
        key = stem(normalise(word))
        synonyms[key] = synonyms.get(key, ()) + tuple(targets)
    lists = {}
    for key in ("generic", "stopwords"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{path}: {key}: must be a list of strings")
        lists[key] = frozenset(stem(normalise(v)) for v in value)
    try:
        min_score = float(data.get("min_score", 2.0))
        relative = float(data.get("relative_cutoff", 0.6))
    except (TypeError, ValueError):
        raise PolicyError(f"{path}: min_score/relative_cutoff: must be numbers") from None
    return Topics(synonyms, lists["generic"], lists["stopwords"], min_score, relative)


def stem(token: str) -> str:
    """Crude stem: enough for "cookies"/"cookie", "parties"/"party", "shared"/"share"."""
    if len(token) >= 4 and token.endswith("s") and not token.endswith("ss"):
        token = token[:-1]
    if len(token) >= 5 and token.endswith("y"):
        token = token[:-1] + "i"
    return token[:6] if len(token) > 6 else token


def _stems(text: str) -> list[str]:
    return [stem(t) for t in tokenise(normalise(text))]


@dataclass(frozen=True)
class _Unit:
    heading: str
    text: str
    letter: str
    stems: tuple[str, ...]
    heading_stems: frozenset[str]

    @cached_property
    def counts(self) -> dict[str, int]:
        """How often each stem occurs: scoring looks terms up here, not in `stems`."""
        return dict(Counter(self.stems))


@dataclass(frozen=True)
class PolicyIndex:
    """Precomputed term statistics, so answering a question is a few dict lookups."""

    policy: Policy
    units: tuple[_Unit, ...]
    idf: Mapping[str, float]
    avg_len: float
    topics: Topics

    @classmethod
    def build(cls, policy: Policy, topics: Topics | None = None) -> PolicyIndex:
        units = []
        for section in policy.sections:
            heading_stems = frozenset(_stems(section.heading))
            for paragraph in section.paragraphs:
                units.append(
                    _Unit(section.heading, paragraph, "", tuple(_stems(paragraph)), heading_stems)
                )
            for clause in section.clauses:
                units.append(
                    _Unit(
                        section.heading,
                        clause.text,
                        clause.letter,
                        tuple(_stems(clause.text)),
                        heading_stems,
                    )
                )
        df: dict[str, int] = {}
        for unit in units:
            for s in set(unit.stems) | unit.heading_stems:
                df[s] = df.get(s, 0) + 1
        n = len(units)
        idf = {s: math.log(1 + (n - d + 0.5) / (d + 0.5)) for s, d in df.items()}
        avg = sum(len(u.stems) for u in units) / max(n, 1)
        return cls(policy, tuple(units), idf, avg, topics or Topics())

    def query_terms(self, question: str) -> dict[str, float]:
        """Query stems with weights: synonyms expand, generic words count for little."""
        terms: dict[str, float] = {}
        for s in _stems(question):
            if s in self.topics.stopwords:
                continue
            weight = 0.3 if s in self.topics.generic else 1.0
            terms[s] = max(terms.get(s, 0.0), weight)
            for target in self.topics.synonyms.get(s, ()):
                for t in _stems(target):
                    if t not in self.topics.stopwords:
                        w = 0.3 if t in self.topics.generic else 0.8
                        terms[t] = max(terms.get(t, 0.0), w)
        return terms

    def answer(
        self, question: str, sections: Iterable[str] | None = None, limit: int = 3
    ) -> tuple[Citation, ...]:
        terms = self.query_terms(question)
        if not terms:
            return ()
        allowed = set(sections) if sections is not None else None
        scored: list[tuple[float, int]] = []
        for i, unit in enumerate(self.units):
            if allowed is not None and unit.heading not in allowed:
                continue
            score = self._score(unit, terms)
            if score > 0:
                scored.append((score, i))
        if not scored:
            return ()
        scored.sort(key=lambda p: (-p[0], p[1]))
        best = scored[0][0]
        if allowed is None and best < self.topics.min_score:
            return ()
        out = []
        for score, i in scored[:limit]:
            if score < best * self.topics.relative_cutoff:
                break
            u = self.units[i]
            out.append(Citation(u.heading, u.text, u.letter, round(score, 3)))
        return tuple(out)

    def within(
        self, question: str, headings: Sequence[str], limit: int = 3
    ) -> tuple[Citation, ...]:
        """The passages of the chosen sections that best answer `question`, at least one
        per section (its opening passage when no word of the question is found there, as
        for a question in another language: the policy exists only in English)."""
        out: list[Citation] = []
        for heading in headings:
            found = self.answer(question, sections=[heading], limit=1)
            if not found:
                unit = next((u for u in self.units if u.heading == heading), None)
                found = () if unit is None else (Citation(unit.heading, unit.text, unit.letter),)
            out.extend(found)
        return tuple(out[:limit])

    def _score(self, unit: _Unit, terms: Mapping[str, float]) -> float:
        k1, b = 1.2, 0.5
        length_norm = k1 * (1 - b + b * len(unit.stems) / self.avg_len)
        score = 0.0
        for term, weight in terms.items():
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = unit.counts.get(term, 0)
            if tf:
                score += weight * idf * tf * (k1 + 1) / (tf + length_norm)
            if term in unit.heading_stems:
                score += 0.7 * weight * idf  # the heading speaks for the whole section
        return score


def answer(
    policy: Policy,
    question: str,
    topics: Topics | None = None,
    sections: Iterable[str] | None = None,
    limit: int = 3,
) -> tuple[Citation, ...]:
    """The policy's paragraphs/clauses that best answer `question`, best first.

    Empty when nothing answers well (the pipeline then flags the question for staff).
    Build a `PolicyIndex` once instead when answering many questions.
    """
    return PolicyIndex.build(policy, topics).answer(question, sections, limit)
