"""From per-intent evidence to a decision: the thresholds, the confidence, the opt-out
scopes and correction text, and the `Classification` (with its `Match`es) that results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privbot.understand.citations import cite
from privbot.understand.intents import Intents
from privbot.understand.policy import Citation, PolicyIndex
from privbot.understand.sentences import Sentence

WEIGHTS = {"strong": 2.5, "phrases": 1.5, "weak": 0.5}
ACCEPT = 1.5  # an action needs at least one normal phrase's worth of evidence
RELATIVE = 0.4  # a second action must reach this share of the strongest one
QUESTION_ACCEPT = 1.0
QUESTION_RELATIVE = 0.15  # beside actions, a question needs this share of the top action
CONDITIONAL_FACTOR = 0.3
SAME_SENTENCE_EXTRA = 0.2  # each further phrase of an intent in the same sentence adds this share
SPAM_SIGNALS = 3  # distinct spam signals that flag a mail as spam
SPAM_OVERRIDE = 5  # ... that flag it even when a request phrase was found
LOW_CONFIDENCE = 0.6
EXAMPLE_WORDS = 8  # extra examples up to this many words become phrases, longer ones fuzzy
EXAMPLE_SIMILARITY = 85.0
SCOPES = ("marketing_email", "third_party_marketing", "targeted_ads")


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


def decide(
    intents_data: Intents,
    policy_index: PolicyIndex,
    sentences: Sequence[Sentence],
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
        for i in sorted(intents_data.requests, key=intents_data.names.index)
    }
    top = max(action_scores.values())
    priority = {i.name: i.priority for i in intents_data.intents}
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

    confidence = _confidence(
        accepted, action_scores, top, question_ok, question_score, other_hits, spam
    )
    citations, sections, unanswered = cite(
        intents_data, policy_index, intents, sentences, question_sentences, hit_sentences
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
    sentences: Sequence[Sentence], hit_sentences: Sequence[int], change_sentences: set[int]
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
