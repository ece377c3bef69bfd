"""Per-language cue words and what they tell about a sentence: does it ask something, is
it a polite request, is a phrase negated or conditional; compiling phrase lists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from privbot.understand.intents import Intents
from privbot.understand.language import normalise, tokenise
from privbot.understand.matching import Hit, Matcher, Phrase, compile_phrase
from privbot.understand.sentences import Sentence, contains, starts_with

NEGATION_WINDOW = 3  # words before a phrase in which a negation cancels it
SHORT_QUESTION = 12  # words: a short "how is my data secured." is a question despite its "."


@dataclass(frozen=True)
class LanguageCues:
    """Per-language cue words, merged over all languages (mails mix languages)."""

    negations: frozenset[str]
    # Openers by their first word: a sentence is checked only against those that can match.
    question_openers: dict[str, tuple[tuple[str, ...], ...]]
    request_openers: dict[str, tuple[tuple[str, ...], ...]]
    conditionals: dict[str, tuple[tuple[str, ...], ...]]  # per language: "si" is not "if" in es
    footers: Matcher

    @classmethod
    def build(cls, intents: Intents) -> LanguageCues:
        def seqs(attr: str) -> dict[str, tuple[tuple[str, ...], ...]]:
            out: set[tuple[str, ...]] = set()
            for lang in intents.languages:
                for text in getattr(lang, attr):
                    tokens = tuple(tokenise(normalise(text)))
                    if tokens:
                        out.add(tokens)
            by_first: dict[str, list[tuple[str, ...]]] = {}
            for tokens in sorted(out):
                by_first.setdefault(tokens[0], []).append(tokens)
            return {first: tuple(group) for first, group in by_first.items()}

        footers = []
        for lang in intents.languages:
            footers.extend(compile_phrases(lang.footers, "footer", "footer", lang.code, 0.0))
        negations = {
            t for lang in intents.languages for w in lang.negations for t in tokenise(normalise(w))
        }
        conditionals = {
            lang.code: tuple(
                t for t in (tuple(tokenise(normalise(c))) for c in lang.conditionals) if t
            )
            for lang in intents.languages
        }
        return cls(
            frozenset(negations),
            seqs("question_openers"),
            seqs("request_openers"),
            conditionals,
            Matcher.build(footers),
        )

    def sentence_mode(self, sent: Sentence, hits: Sequence[Hit]) -> tuple[bool, bool]:
        """(asks something, is a polite request shaped as a question)."""
        tokens = sent.tokens
        marked = any(h.phrase.intent == "question" and h.phrase.kind == "strong" for h in hits)
        text = sent.text.rstrip()
        is_question = (
            "?" in text
            or "？" in text
            or marked
            # An opener without "?" only counts on an unfinished line ("how is my data
            # used"): "Where possible, ... period." in a letter is no question.
            or (
                (text[-1:] not in ".;:," or len(tokens) <= SHORT_QUESTION)
                and bool(tokens)
                and any(starts_with(tokens, o) for o in self.question_openers.get(tokens[0], ()))
            )
        )
        head = tokens[:5]
        is_request = is_question and any(
            contains(head, o) for word in set(head) for o in self.request_openers.get(word, ())
        )
        return is_question, is_request

    def negated(self, hit: Hit, tokens: Sequence[str]) -> bool:
        if not hit.positions:
            return False
        if any(word in self.negations for word, _ in hit.phrase.words):
            return False  # "no more emails" carries its own negation: it is the request
        start = max(0, hit.start - NEGATION_WINDOW)
        inside = set(hit.positions)
        return any(
            tokens[i] in self.negations for i in range(start, hit.end + 1) if i not in inside
        )

    def conditional(self, hit: Hit, tokens: Sequence[str], language: str) -> bool:
        if not hit.positions:
            return False
        before = tokens[: hit.start]
        return any(contains(before, cue) for cue in self.conditionals.get(language, ()))


def compile_phrases(
    texts: Iterable[str], intent: str, kind: str, language: str, weight: float
) -> list[Phrase]:
    out = []
    for text in texts:
        phrase = compile_phrase(text, intent, kind, language, weight)
        if phrase is not None:
            out.append(phrase)
    return out


def dedupe_phrases(phrases: Iterable[Phrase]) -> list[Phrase]:
    """The same words listed for several languages ("newsletter") are one phrase."""
    seen: dict[tuple[str, str, tuple[tuple[str, bool], ...], str], Phrase] = {}
    for phrase in phrases:
        seen.setdefault((phrase.intent, phrase.kind, phrase.words, phrase.substring), phrase)
    return list(seen.values())
