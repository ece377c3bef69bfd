"""Work out what a mail wants: a transparent, phrase-based scorer.

Steps per message: split the new text (and subject) into sentences; drop list footers;
find the intent phrases in each sentence; discard those right after a negation, damp those
after a conditional ("if you delete..."); move request phrases found in a question ("how
do I delete my account?") to the question; then sum per intent and decide. Every number
the decision uses is below, every word comes from the data files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz

from privbot.policy import Citation, Policy, PolicyIndex, Topics
from privbot.understand.intents import (
    ACTION_INTENTS,
    ANY_LANGUAGE,
    PHRASE_TABLES,
    Intents,
    IntentsError,
)
from privbot.understand.language import LanguageGuesser, normalise, tokenise
from privbot.understand.matching import Hit, Matcher, Phrase, compile_phrase

WEIGHTS = {"strong": 2.5, "phrases": 1.5, "weak": 0.5}
ACCEPT = 1.5  # an action needs at least one normal phrase's worth of evidence
RELATIVE = 0.4  # a second action must reach this share of the strongest one
QUESTION_ACCEPT = 1.0
QUESTION_RELATIVE = 0.15  # beside actions, a question needs this share of the top action
CONDITIONAL_FACTOR = 0.3
SAME_SENTENCE_EXTRA = 0.2  # each further phrase of an intent in the same sentence adds this share
NEGATION_WINDOW = 3  # words before a phrase in which a negation cancels it
SPAM_SIGNALS = 3  # distinct spam signals that flag a mail as spam
SPAM_OVERRIDE = 5  # ... that flag it even when a request phrase was found
LOW_CONFIDENCE = 0.6
SHORT_QUESTION = 12  # words: a short "how is my data secured." is a question despite its "."
EXAMPLE_WORDS = 8  # extra examples up to this many words become phrases, longer ones fuzzy
EXAMPLE_SIMILARITY = 85.0
SCOPES = ("marketing_email", "third_party_marketing", "targeted_ads")

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr|rv|sv|vs|antw)\s*:\s*)+", re.I)
_LIST_MARK = re.compile(r"(?:\d{1,3}|[a-z])[.)]")
_SENTENCE_END = re.compile(r"(?<=[!?。！？])\s*|(?<=[.;])\s+(?=[^\d\s(])")


@dataclass(frozen=True)
class Match:
    """One phrase found, for the staff's "why" view."""

    intent: str
    phrase: str
    kind: str
    language: str
    sentence: str
    weight: float  # what it added (0 when negated)
    negated: bool = False
    conditional: bool = False
    in_question: bool = False


@dataclass(frozen=True)
class Classification:
    intents: tuple[str, ...]
    confidence: float
    language: str
    sections: tuple[str, ...]
    citations: tuple[Citation, ...]
    opt_out_scopes: tuple[str, ...]
    named_addresses: tuple[str, ...]
    correction_text: str | None
    spam: bool
    low_confidence: bool
    candidates: tuple[tuple[str, float], ...]
    matches: tuple[Match, ...]
    unanswered_question: bool = False  # a question the policy does not answer: staff


@dataclass(frozen=True)
class _Sentence:
    text: str  # original words, for quoting
    tokens: tuple[str, ...]
    norm: str
    is_subject: bool = False


@dataclass(frozen=True)
class _LanguageCues:
    """Per-language cue words, merged over all languages (mails mix languages)."""

    negations: frozenset[str]
    question_openers: tuple[tuple[str, ...], ...]
    request_openers: tuple[tuple[str, ...], ...]
    conditionals: dict[str, tuple[tuple[str, ...], ...]]  # per language: "si" is not "if" in es
    footers: Matcher


@dataclass(frozen=True)
class Classifier:
    intents: Intents
    policy_index: PolicyIndex
    matcher: Matcher
    cues: _LanguageCues
    guesser: LanguageGuesser
    fuzzy_examples: tuple[tuple[str, str, str], ...]  # (normalised text, intent, language)

    @classmethod
    def build(
        cls,
        intents: Intents,
        policy: Policy,
        topics: Topics | None = None,
        extra_examples: Iterable[tuple[str, str, str]] = (),
    ) -> Classifier:
        """Compile everything once. `extra_examples` are (text, intent, language) triples,
        e.g. staff corrections: short ones become phrases, long ones fuzzy examples."""
        headings = set(policy.headings)
        phrases: list[Phrase] = []
        for intent in intents.intents:
            for section in intent.policy_sections:
                if section not in headings:
                    raise IntentsError(
                        f"intents/{intent.name}.toml: policy_sections: "
                        f"{section!r} is not a heading of the policy"
                    )
            for kind in PHRASE_TABLES:
                for lang, texts in getattr(intent, kind):
                    phrases.extend(_compile(texts, intent.name, kind, lang, WEIGHTS[kind]))
            for group, members in intent.groups:
                for member, table in members:
                    for lang, texts in table:
                        phrases.extend(_compile(texts, intent.name, f"{group}.{member}", lang, 0.0))
        fuzzy: list[tuple[str, str, str]] = []
        known = set(intents.names)
        for text, intent_name, lang in extra_examples:
            if intent_name not in known:
                raise IntentsError(f"extra example {text[:40]!r}: unknown intent {intent_name!r}")
            norm = normalise(_URL.sub(" urltoken ", text))
            if len(tokenise(norm)) <= EXAMPLE_WORDS:
                phrases.extend(_compile([text], intent_name, "phrases", lang, WEIGHTS["phrases"]))
            else:
                fuzzy.append((" ".join(tokenise(norm)), intent_name, lang))
        phrases = _dedupe(phrases)
        cues = _cues(intents)
        guesser = LanguageGuesser.build(
            (lang.code, lang.script, lang.stopwords) for lang in intents.languages
        )
        return cls(
            intents,
            PolicyIndex.build(policy, topics),
            Matcher.build(phrases),
            cues,
            guesser,
            tuple(fuzzy),
        )

    @classmethod
    def from_paths(
        cls, intents_dir: Path, policy_path: Path, topics_path: Path | None = None
    ) -> Classifier:
        from privbot.policy import load_policy, load_topics
        from privbot.understand.intents import load_intents

        topics = load_topics(topics_path) if topics_path else None
        return cls.build(load_intents(intents_dir), load_policy(policy_path), topics)

    # -- classification ---------------------------------------------------------------

    def classify(self, new_text: str, subject: str = "") -> Classification:
        addresses = self._addresses(f"{subject}\n{new_text}")
        sentences = _sentences(new_text, subject)
        language = self.guesser.guess(f"{subject}\n{new_text}")
        scores: dict[str, float] = {}
        asked: list[tuple[int, set[str], bool]] = []  # (sentence, intents asked about, topic)
        matches: list[Match] = []
        other_hits = 0.0
        spam_signals: set[str] = set()
        hit_sentences: dict[str, list[int]] = {}
        decisive: set[str] = set()  # intents with more than weak hints
        scope_hits: dict[int, set[str]] = {}
        change_sentences: set[int] = set()

        for si, sent in enumerate(sentences):
            hits = self.matcher.match(sent.tokens, sent.norm)
            for hit in hits:
                if hit.phrase.kind == "spam.signals":
                    spam_signals.add(hit.phrase.text)
                elif hit.phrase.kind == "spam.decisive" and (sent.is_subject or si < 3):
                    spam_signals.update(f"{hit.phrase.text}#{n}" for n in range(SPAM_OVERRIDE))
            if self.cues.footers.match(sent.tokens, sent.norm):
                continue  # a list footer is not the sender speaking
            is_question, is_request = self._sentence_mode(sent, hits)
            sentence_asks: set[str] = set()
            sentence_weights: dict[str, list[float]] = {}
            topic = False
            for hit in hits:
                p = hit.phrase
                kind = p.kind
                if kind.startswith("scopes."):
                    scope_hits.setdefault(si, set()).add(kind.removeprefix("scopes."))
                    continue
                if kind == "change.markers":
                    change_sentences.add(si)
                    continue
                if kind.startswith("spam."):
                    continue
                if p.intent == "question":
                    if kind == "phrases":
                        topic = True
                    continue
                negated = self._negated(hit, sent.tokens)
                conditional = self._conditional(hit, sent.tokens, language)
                in_question = (
                    is_question and not is_request and p.intent in ACTION_INTENTS and not negated
                )
                weight = 0.0 if negated else p.weight
                if conditional:
                    weight *= CONDITIONAL_FACTOR
                matches.append(
                    Match(
                        p.intent,
                        p.text,
                        kind,
                        p.language,
                        sent.text,
                        0.0 if in_question else weight,
                        negated,
                        conditional,
                        in_question,
                    )
                )
                if negated:
                    continue
                if in_question:
                    if kind != "weak":
                        sentence_asks.add(p.intent)
                    continue
                if p.intent == "other":
                    other_hits += weight
                    continue
                sentence_weights.setdefault(p.intent, []).append(weight)
                if kind != "weak":
                    decisive.add(p.intent)
                if weight >= WEIGHTS["phrases"] * CONDITIONAL_FACTOR:
                    hit_sentences.setdefault(p.intent, []).append(si)
            for intent_name, weights in sentence_weights.items():
                # Overlapping phrases in one sentence are one piece of evidence, not several.
                weights.sort(reverse=True)
                gained = weights[0] + SAME_SENTENCE_EXTRA * sum(weights[1:])
                scores[intent_name] = scores.get(intent_name, 0.0) + gained
            for example, intent_name, lang in self.fuzzy_examples:
                if fuzz.ratio(" ".join(sent.tokens), example) >= EXAMPLE_SIMILARITY:
                    scores[intent_name] = scores.get(intent_name, 0.0) + WEIGHTS["phrases"]
                    decisive.add(intent_name)
                    hit_sentences.setdefault(intent_name, []).append(si)
                    matches.append(
                        Match(intent_name, example, "example", lang, sent.text, WEIGHTS["phrases"])
                    )
            requested = is_request and any(
                intent_name in ACTION_INTENTS and max(w) >= WEIGHTS["phrases"]
                for intent_name, w in sentence_weights.items()
            )
            if is_question and not requested:
                asked.append((si, sentence_asks, topic))

        return self._decide(
            sentences,
            language,
            scores,
            decisive,
            asked,
            other_hits,
            spam_signals,
            hit_sentences,
            scope_hits,
            change_sentences,
            addresses,
            tuple(matches),
        )

    def _decide(
        self,
        sentences: Sequence[_Sentence],
        language: str,
        scores: dict[str, float],
        decisive: set[str],
        asked: list[tuple[int, set[str], bool]],
        other_hits: float,
        spam_signals: set[str],
        hit_sentences: dict[str, list[int]],
        scope_hits: dict[int, set[str]],
        change_sentences: set[int],
        addresses: tuple[str, ...],
        matches: tuple[Match, ...],
    ) -> Classification:
        # Weak hints alone never make a request ("should be" five times is no correction).
        action_scores = {
            i: scores.get(i, 0.0) if i in decisive else min(scores.get(i, 0.0), ACCEPT / 2)
            for i in ACTION_INTENTS
        }
        top = max(action_scores.values())
        priority = {i.name: i.priority for i in self.intents.intents}
        # Importance: the intent files' priority (deletion covers an opt-out), then score.
        accepted = sorted(
            (i for i, s in action_scores.items() if s >= ACCEPT and s >= RELATIVE * top),
            key=lambda i: (-priority[i], -action_scores[i]),
        )
        # A question restating a request made elsewhere in the mail is not a new question.
        question_sentences = [
            si
            for si, asks, topic in asked
            if (asks and not asks <= set(accepted)) or (topic and not asks)
        ]
        weak_questions = [si for si, asks, topic in asked if not asks and not topic]
        question_score = float(len(question_sentences))
        if not question_sentences and weak_questions and not accepted and not other_hits:
            # A plain question with no privacy word: still a question; if the policy has
            # no answer, it goes to staff as unanswered.
            question_score, question_sentences = QUESTION_ACCEPT, weak_questions
        question_ok = question_score >= QUESTION_ACCEPT and (
            not accepted or question_score >= QUESTION_RELATIVE * top
        )
        # Spam may ask questions ("want to know the TRUTH?"); only a request protects.
        spam = len(spam_signals) >= SPAM_SIGNALS and (
            not accepted or len(spam_signals) >= SPAM_OVERRIDE
        )
        if spam:
            accepted, question_ok = [], False

        intents: list[str] = list(accepted)
        if question_ok:
            intents.append("question")
        if not intents:
            intents = ["other"]

        confidence = self._confidence(
            accepted, action_scores, top, question_ok, question_score, other_hits, spam
        )
        citations, sections, unanswered = self._cite(
            intents, sentences, question_sentences, hit_sentences
        )
        scopes: tuple[str, ...] = ()
        if "opt_out" in accepted:
            scopes = _scopes(hit_sentences.get("opt_out", []), scope_hits)
        correction_text = None
        if "correction" in accepted:
            correction_text = _correction_text(
                sentences, hit_sentences.get("correction", []), change_sentences
            )
        candidates = {i: s for i, s in action_scores.items() if s > 0}
        if question_score:
            candidates["question"] = question_score
        if other_hits or spam:
            candidates["other"] = max(other_hits, float(len(spam_signals)))
        ranked = tuple(
            sorted(
                ((i, round(s / (s + ACCEPT), 3)) for i, s in candidates.items()),
                key=lambda p: -p[1],
            )
        )
        return Classification(
            intents=tuple(intents),
            confidence=round(confidence, 3),
            language=language,
            sections=sections,
            citations=citations,
            opt_out_scopes=scopes,
            named_addresses=addresses,
            correction_text=correction_text,
            spam=spam,
            low_confidence=confidence < LOW_CONFIDENCE or unanswered,
            candidates=ranked,
            matches=matches,
            unanswered_question=unanswered,
        )

    @staticmethod
    def _confidence(
        accepted: list[str],
        action_scores: dict[str, float],
        top: float,
        question_ok: bool,
        question_score: float,
        other_hits: float,
        spam: bool,
    ) -> float:
        if spam:
            return 0.9
        if accepted:
            confidence = top / (top + ACCEPT)
            rejected = [s for i, s in action_scores.items() if i not in accepted and s > 0]
            if rejected and max(rejected) >= 0.25 * top:
                confidence *= 0.8  # a runner-up that nearly made it: staff should look
            return confidence
        near_miss = top >= WEIGHTS["phrases"] * 0.5
        if question_ok:
            confidence = 0.6 + 0.15 * min(question_score, 2.0)
            return confidence * (0.8 if near_miss else 1.0)
        if other_hits:
            return 0.85 if not near_miss else 0.5
        return 0.3 if near_miss else 0.5

    def _cite(
        self,
        intents: Sequence[str],
        sentences: Sequence[_Sentence],
        question_sentences: Sequence[int],
        hit_sentences: dict[str, list[int]],
    ) -> tuple[tuple[Citation, ...], tuple[str, ...], bool]:
        citations: list[Citation] = []
        sections: list[str] = []
        unanswered = False
        for name in intents:
            if name == "question":
                text = " ".join(sentences[i].text for i in question_sentences)
                found = self.policy_index.answer(text, limit=3)
                unanswered = not found
                sections.extend(c.heading for c in found)
                citations.extend(found)
            elif name in ACTION_INTENTS:
                intent = self.intents.get(name)
                sections.extend(intent.policy_sections)
                said = " ".join(sentences[i].text for i in hit_sentences.get(name, [])[:3])
                found = self.policy_index.answer(
                    f"{intent.cite_query} {said}", sections=intent.policy_sections, limit=2
                )
                citations.extend(found)
        return tuple(dict.fromkeys(citations)), tuple(dict.fromkeys(sections)), unanswered

    def _sentence_mode(self, sent: _Sentence, hits: Sequence[Hit]) -> tuple[bool, bool]:
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
                and any(_starts_with(tokens, opener) for opener in self.cues.question_openers)
            )
        )
        is_request = is_question and any(
            _contains(tokens[:5], opener) for opener in self.cues.request_openers
        )
        return is_question, is_request

    def _negated(self, hit: Hit, tokens: Sequence[str]) -> bool:
        if not hit.positions:
            return False
        if any(word in self.cues.negations for word, _ in hit.phrase.words):
            return False  # "no more emails" carries its own negation: it is the request
        start = max(0, hit.start - NEGATION_WINDOW)
        inside = set(hit.positions)
        return any(
            tokens[i] in self.cues.negations for i in range(start, hit.end + 1) if i not in inside
        )

    def _conditional(self, hit: Hit, tokens: Sequence[str], language: str) -> bool:
        if not hit.positions:
            return False
        before = tokens[: hit.start]
        return any(_contains(before, cue) for cue in self.cues.conditionals.get(language, ()))

    def _addresses(self, text: str) -> tuple[str, ...]:
        found = []
        for address in _EMAIL.findall(text):
            address = address.strip(".").lower()
            domain = address.rsplit("@", 1)[-1]
            if any(domain == d or domain.endswith("." + d) for d in self.intents.own_domains):
                continue
            found.append(address)
        return tuple(dict.fromkeys(found))


def _compile(
    texts: Iterable[str], intent: str, kind: str, language: str, weight: float
) -> list[Phrase]:
    out = []
    for text in texts:
        phrase = compile_phrase(text, intent, kind, language, weight)
        if phrase is not None:
            out.append(phrase)
    return out


def _dedupe(phrases: Iterable[Phrase]) -> list[Phrase]:
    """The same words listed for several languages ("newsletter") are one phrase."""
    seen: dict[tuple[str, str, tuple[tuple[str, bool], ...], str], Phrase] = {}
    for phrase in phrases:
        seen.setdefault((phrase.intent, phrase.kind, phrase.words, phrase.substring), phrase)
    return list(seen.values())


def _cues(intents: Intents) -> _LanguageCues:
    def seqs(attr: str) -> tuple[tuple[str, ...], ...]:
        out: set[tuple[str, ...]] = set()
        for lang in intents.languages:
            for text in getattr(lang, attr):
                tokens = tuple(tokenise(normalise(text)))
                if tokens:
                    out.add(tokens)
        return tuple(sorted(out))

    footers = []
    for lang in intents.languages:
        footers.extend(_compile(lang.footers, "footer", "footer", lang.code, 0.0))
    negations = {
        t for lang in intents.languages for w in lang.negations for t in tokenise(normalise(w))
    }
    conditionals = {
        lang.code: tuple(t for t in (tuple(tokenise(normalise(c))) for c in lang.conditionals) if t)
        for lang in intents.languages
    }
    return _LanguageCues(
        frozenset(negations),
        seqs("question_openers"),
        seqs("request_openers"),
        conditionals,
        Matcher.build(footers),
    )


def _starts_with(tokens: Sequence[str], seq: tuple[str, ...]) -> bool:
    return tuple(tokens[: len(seq)]) == seq


def _contains(tokens: Sequence[str], seq: tuple[str, ...]) -> bool:
    n = len(seq)
    return any(tuple(tokens[i : i + n]) == seq for i in range(len(tokens) - n + 1))


def _sentences(new_text: str, subject: str) -> list[_Sentence]:
    """Subject first, then the body split into sentences (soft-wrapped lines rejoined)."""
    out: list[_Sentence] = []
    subject = _SUBJECT_PREFIX.sub("", subject or "").strip()
    if subject:
        out.append(_make_sentence(subject, is_subject=True))
    for chunk in _lines_to_chunks(new_text or ""):
        pending = ""
        for piece in _SENTENCE_END.split(chunk):
            piece = piece.strip()
            if _LIST_MARK.fullmatch(piece):
                pending = f"{pending}{piece} "  # "6." belongs to the item that follows
            elif piece:
                out.append(_make_sentence(pending + piece))
                pending = ""
    return out


def _lines_to_chunks(text: str) -> list[str]:
    """Rejoin lines that a mail client wrapped; keep real line breaks as sentence breaks."""
    chunks: list[str] = []
    current = ""
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            if current:
                chunks.append(current)
            current = ""
            continue
        wrapped = (
            current
            and len(current.rsplit("\n", 1)[-1]) >= 60
            and current[-1] not in ".!?:;"
            and line[:1].islower()
        )
        if wrapped:
            current = f"{current} {line}"
        else:
            if current:
                chunks.append(current)
            current = line
    if current:
        chunks.append(current)
    return chunks


def _make_sentence(text: str, is_subject: bool = False) -> _Sentence:
    prepared = _EMAIL.sub(" emailtoken ", _URL.sub(" urltoken ", text))
    norm = normalise(prepared)
    return _Sentence(text, tuple(tokenise(norm)), norm, is_subject)


def _scopes(opt_out_sentences: Sequence[int], scope_hits: dict[int, set[str]]) -> tuple[str, ...]:
    found: set[str] = set()
    for si in opt_out_sentences:
        found |= scope_hits.get(si, set())
    if not found:
        for hits in scope_hits.values():
            found |= hits - {"marketing_email"}
    if "all" in found:
        return SCOPES
    return tuple(s for s in SCOPES if s in found) or ("marketing_email",)


def _correction_text(
    sentences: Sequence[_Sentence], hit_sentences: Sequence[int], change_sentences: set[int]
) -> str | None:
    """The sentence(s) stating the change: those that asked for a correction or carry a
    change marker ("new", "should be"), plus the line after a "...changes:" lead-in."""
    chosen: set[int] = set()
    for si in hit_sentences:
        chosen.add(si)
        if sentences[si].text.endswith(":") and si + 1 < len(sentences):
            chosen.add(si + 1)
    for si in change_sentences:
        if any(abs(si - h) <= 2 for h in hit_sentences):
            chosen.add(si)
    texts = [sentences[i].text for i in sorted(chosen) if not sentences[i].is_subject]
    return " ".join(texts) if texts else None


__all__ = ["ANY_LANGUAGE", "Classification", "Classifier", "Match"]
