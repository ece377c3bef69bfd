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
    machine: bool = False  # the learned layer: a machine wrote this (screened, no reply)
    # The learned layer's probability per label, and the named features behind each choice.
    probabilities: tuple[tuple[str, float], ...] = ()
    evidence: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()


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
    with_citations: bool = True,
) -> Classification:
    """The phrase layer's reading. `with_citations=False` leaves the policy unsearched,
    for a reading that only feeds the learned layer (searching it is a tenth of the time)."""
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
    citations, sections, unanswered = (
        cite(intents_data, policy_index, intents, sentences, question_sentences, hit_sentences)
        if with_citations
        else ((), (), False)
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


# The learned layer's thresholds. A label is chosen at ACCEPT_P. A reading whose least sure
# part (a label chosen, or one left out) is below CONFIDENT_P goes to staff with the
# candidates, and nothing is applied.
ACCEPT_P = 0.5
CONFIDENT_P = 0.85
OTHER_BESIDE_P = 0.7  # "other" beside privacy requests: a separate matter for staff
OTHER_DOUBT_P = 0.3  # "other" left out at this or more: staff look (it may be a refund)
MACHINE_P = 0.6
UNGROUNDED_P = 0.9  # a request whose words name no action: read (never acted on) only this sure
# Machine without any of the lexicon's machine words. High, because the two mistakes differ:
# a machine answered gets one capped reply, a person screened gets none (a 1991 MIME test
# post by a person reads 0.965 to the model trained on 8,730 mails).
MACHINE_SURE_P = 0.97
# Sections: the likeliest answers, each at least SECTION_P and SECTION_RELATIVE of the best.
SECTION_P = 0.2
SECTION_RELATIVE = 0.5
MAX_SECTIONS = 3
NO_ANSWER = "none"  # the section label of a question the policy does not answer


def decide_learned(
    intents_data: Intents,
    policy_index: PolicyIndex,
    phrases: Classification,
    sentences: Sequence[Sentence],
    p: dict[str, float],
    evidence: dict[str, list[tuple[str, float]]],
    section_p: dict[str, float] | None = None,
    grounded: bool = True,
    machine_words: bool = True,
    passes_on: bool = False,
) -> Classification:
    """The final reading from the learned layer's probabilities; the phrase layer still
    supplies what it alone knows (opt-out scopes, the stated change, the sender's words).
    `section_p`: the section model's probability per policy section for a question.
    `grounded`: the sender's words name an action or an object of the lexicon, or a phrase
    matched; without that, nothing is acted on (an empty or foreign body is no request).
    `passes_on`: the mail forwards another inline, which people do and auto-responders
    do not; without machine words of its own it is then never set aside as a machine."""
    names = [i.name for i in sorted(intents_data.intents, key=lambda i: -i.priority)]
    privacy = [n for n in names if n != "other"]
    chosen = [n for n in privacy if p.get(n, 0.0) >= ACCEPT_P]
    if p.get("other", 0.0) >= (OTHER_BESIDE_P if chosen else ACCEPT_P):
        chosen.append("other")
    requests = [n for n in chosen if n in intents_data.requests]
    # Machine wording: the lexicon's auto-reply, ticket, challenge or bounce words, or a
    # model that is all but certain (a MIME test mail is odd, but a person sent it).
    machine = (
        not requests
        and (machine_words or not passes_on)
        and p.get("machine", 0.0) >= (MACHINE_P if machine_words else MACHINE_SURE_P)
    )
    if requests and not grounded:
        # The words name no action of the lexicon ("frobnicate my records please", or a
        # typo such as "remvoe me"): a request is read into them only when the model is
        # all but sure, and then only as a candidate for staff (see low_confidence below).
        chosen = [
            n for n in chosen if n not in intents_data.requests or p.get(n, 0.0) >= UNGROUNDED_P
        ]
    if not chosen and grounded and phrases_stand(phrases):
        # The model is unsure of everything, the phrase lists are sure: theirs is the
        # reading (low confidence all the same: staff confirm it).
        chosen = list(phrases.intents)
    if not chosen:
        # Nothing clear was asked: no request is invented. The likelier of a question
        # and another matter is the reading (low confidence: staff see the candidates).
        chosen = ["question" if p.get("question", 0.0) > p.get("other", 0.0) else "other"]
    # The question goes last, after the requests (the reply answers it with what is left).
    chosen = [n for n in chosen if n != "question"] + (["question"] if "question" in chosen else [])
    # How sure the whole reading is: its least sure part, each label chosen or left out.
    # Measured on a blind batch, this is calibrated (0.8-0.9: 87% right, 0.9-0.95: 92%),
    # where the chosen labels' probabilities alone were not (0.8-0.9: 69%).
    # "Other" left out has its own, lower bar (OTHER_DOUBT_P, below): at 0.15 it says little
    # about the request, and a clear opt-out must not wait for staff over it.
    confidence = min(
        p.get(n, 0.0) if n in chosen else 1.0 - p.get(n, 0.0)
        for n in names
        if n in chosen or n != "other"
    )
    other_doubt = "other" not in chosen and p.get("other", 0.0) >= OTHER_DOUBT_P
    citations, sections, unanswered = cited(
        intents_data, policy_index, chosen, sentences, section_p
    )
    scopes = (phrases.opt_out_scopes or ("marketing_email",)) if "opt_out" in chosen else ()
    change = None
    if "correction" in chosen:
        change = (
            phrases.correction_text or " ".join(s.text for s in sentences if not s.is_subject)[:500]
        )
    return Classification(
        intents=tuple(chosen),
        confidence=round(confidence, 3),
        language=phrases.language,
        sections=sections,
        citations=citations,
        opt_out_scopes=scopes,
        named_addresses=phrases.named_addresses,
        correction_text=change,
        # The phrase lists' spam signals screen a mail only where the model reads no
        # request and no question: a person complaining about our offers, or asking
        # whether a copy is free, uses the same words. A request or a question in a mail
        # full of them is bait or a person; staff decide, nothing is applied.
        spam=phrases.spam and not requests and "question" not in chosen,
        # A question the policy does not answer is not doubt: it goes to staff (the plan), and
        # the reply says honestly that a person will answer it.
        low_confidence=(
            confidence < CONFIDENT_P
            or other_doubt  # a separate matter may be there: staff look
            or (bool(requests) and not grounded)  # a request the words did not name
            or (phrases.spam and (bool(requests) or "question" in chosen))
        ),
        candidates=tuple(
            sorted(((n, round(p.get(n, 0.0), 3)) for n in names), key=lambda c: -c[1])
        ),
        matches=phrases.matches,
        unanswered_question=unanswered and "question" in chosen,
        machine=machine,
        **model_info(p, evidence),  # type: ignore[arg-type]
    )


def cited(
    intents_data: Intents,
    policy_index: PolicyIndex,
    chosen: Sequence[str],
    sentences: Sequence[Sentence],
    section_p: dict[str, float] | None,
) -> tuple[tuple[Citation, ...], tuple[str, ...], bool]:
    """(citations, sections, a question the policy does not answer) for the chosen intents:
    each request's own sections, and for a question what the section model says answers it
    (the policy is silent: none)."""
    question_sentences = [
        i for i, s in enumerate(sentences) if s.text.rstrip().endswith("?")
    ] or list(range(len(sentences)))
    actions = [n for n in chosen if n != "question"]
    citations, sections, unanswered = cite(
        intents_data, policy_index, actions, sentences, question_sentences, {}
    )
    if "question" in chosen:
        question = " ".join(sentences[i].text for i in question_sentences)
        found, unanswered = _answer(policy_index, question, section_p)
        citations = (*citations, *(c for c in found if c not in citations))
        sections = tuple(dict.fromkeys((*sections, *(c.heading for c in found))))
    return citations, sections, unanswered


def _answer(
    policy_index: PolicyIndex,
    question: str,
    section_p: dict[str, float] | None,
) -> tuple[tuple[Citation, ...], bool]:
    """(the passages that answer a question, the policy is silent on it). The section
    model picks the sections (at most MAX_SECTIONS, none when "the policy is silent" is
    likelier); the words of the question pick the passages within them."""
    if section_p is None:  # no labelled sections in the bank: the words alone
        found = policy_index.answer(question, limit=MAX_SECTIONS)
        return found, not found
    ranked = sorted(section_p.items(), key=lambda kv: -kv[1])
    best_name, best = ranked[0]
    if best_name == NO_ANSWER or best < SECTION_P:
        return (), True
    headings = [
        name
        for name, value in ranked[:MAX_SECTIONS]
        if name != NO_ANSWER and value >= max(SECTION_P, SECTION_RELATIVE * best)
    ]
    return policy_index.within(question, headings, limit=MAX_SECTIONS), False


def phrases_stand(phrases: Classification) -> bool:
    """The phrase lists are sure of a request or a question (or of spam): their reading,
    which a privacy officer can edit and explain, is the answer."""
    return phrases.spam or (not phrases.low_confidence and phrases.intents != ("other",))


def model_info(
    p: dict[str, float], evidence: dict[str, list[tuple[str, float]]]
) -> dict[str, tuple[tuple[str, object], ...]]:
    """What staff see of the learned layer: its probabilities and the features behind them."""
    return {
        "probabilities": tuple((k, round(v, 3)) for k, v in p.items()),
        "evidence": tuple((k, tuple(v)) for k, v in evidence.items()),
    }
