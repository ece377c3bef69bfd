"""Work out what a mail wants: a transparent, phrase-based scorer.

Steps per message: split the new text (and subject) into sentences; drop list footers;
find the intent phrases in each sentence; discard those right after a negation, damp those
after a conditional ("if you delete..."); move request phrases found in a question ("how
do I delete my account?") to the question; then sum per intent and decide. Every number
the decision uses is below, every word comes from the data files.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rapidfuzz import fuzz

from privbot.mail.quotes import starts_forward
from privbot.understand.concepts import STEMMERS, Concepts
from privbot.understand.cues import LanguageCues, compile_phrases, dedupe_phrases
from privbot.understand.intents import (
    ANY_LANGUAGE,
    PHRASE_TABLES,
    Intents,
    IntentsError,
)
from privbot.understand.language import LanguageGuesser, normalise, tokenise
from privbot.understand.learned import (
    MACHINE,
    Example,
    Learned,
    Model,
    concept_features,
    length_features,
    ngrams,
    phrase_features,
    train,
)
from privbot.understand.matching import Matcher, Phrase
from privbot.understand.policy import Policy, PolicyIndex, Topics, heading_key
from privbot.understand.scoring import (
    ACCEPT_P,
    CONDITIONAL_FACTOR,
    EXAMPLE_SIMILARITY,
    EXAMPLE_WORDS,
    NO_ANSWER,
    OTHER_DOUBT_P,
    SAME_SENTENCE_EXTRA,
    SPAM_OVERRIDE,
    WEIGHTS,
    Classification,
    Match,
    cited,
    decide,
    decide_learned,
    model_info,
    phrases_stand,
)
from privbot.understand.sentences import URL, Sentence, named_addresses, split_sentences


@dataclass(frozen=True)
class Classifier:
    intents: Intents
    policy_index: PolicyIndex
    matcher: Matcher
    cues: LanguageCues
    guesser: LanguageGuesser
    fuzzy_examples: tuple[tuple[str, str, str], ...]  # (normalised text, intent, language)
    concepts: Concepts | None = None  # with `model`: the learned layer (learned.py)
    model: Model | None = None
    sections_model: Model | None = None  # which policy sections answer a question

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
                    phrases.extend(compile_phrases(texts, intent.name, kind, lang, WEIGHTS[kind]))
            for group, members in intent.groups:
                for member, table in members:
                    for lang, texts in table:
                        phrases.extend(
                            compile_phrases(texts, intent.name, f"{group}.{member}", lang, 0.0)
                        )
        fuzzy: list[tuple[str, str, str]] = []
        known = set(intents.names)
        for text, intent_name, lang in extra_examples:
            if intent_name not in known:
                raise IntentsError(f"extra example {text[:40]!r}: unknown intent {intent_name!r}")
            norm = normalise(URL.sub(" urltoken ", text))
            if len(tokenise(norm)) <= EXAMPLE_WORDS:
                phrases.extend(
                    compile_phrases([text], intent_name, "phrases", lang, WEIGHTS["phrases"])
                )
            else:
                fuzzy.append((" ".join(tokenise(norm)), intent_name, lang))
        phrases = dedupe_phrases(phrases)
        cues = LanguageCues.build(intents)
        # The languages of the intent files and of the concept lexicon's stemmers.
        guesser = LanguageGuesser.build([*(lang.code for lang in intents.languages), *STEMMERS])
        return cls(
            intents,
            PolicyIndex.build(policy, topics),
            Matcher.build(phrases),
            cues,
            guesser,
            tuple(fuzzy),
        )

    # -- classification ---------------------------------------------------------------

    def classify(self, new_text: str, subject: str = "", forwarded: str = "") -> Classification:
        """What the mail asks for: the phrase layer's reading, decided by the learned layer
        when there is one (the phrases are then part of its evidence). `forwarded`: the
        mail a forward passes on, read by the learned layer as a segment of its own."""
        all_sentences = split_sentences(new_text, subject)
        if self.model is None or self.concepts is None:
            return self._phrases(new_text, subject, all_sentences)
        phrases = self._phrases(new_text, subject, all_sentences, with_citations=False)
        sentences, text = self._spoken(all_sentences)
        features = self._features(phrases, sentences, text, forwarded=forwarded)
        grams = ngrams(text)
        probabilities = self.model.probabilities(features, text, grams)
        evidence = {
            name: self.model.top_features(features, name)
            for name, p in probabilities.items()
            if p >= 0.5
        }
        if phrases.language not in STEMMERS or (
            phrases_stand(phrases) and ("c:law" in features or "subj:c:law" in features)
        ):
            # A language the concept lexicon and the bank do not cover, or a formal letter
            # citing the law where the phrase lists are sure (they were written from such
            # letters): the phrase lists' reading stands.
            full = self._phrases(new_text, subject, all_sentences)
            if phrases.language not in STEMMERS:
                return replace(full, **model_info(probabilities, evidence))
            if phrases_stand(full):
                # Its intents stand; what answers a question is still the section model's
                # call ("who is your DPO?" cites the law, and the policy is silent on it).
                if "question" in full.intents and self.sections_model is not None:
                    section_p = self.sections_model.probabilities(features, text, grams)
                    citations, sections, unanswered = cited(
                        self.intents, self.policy_index, full.intents, sentences, section_p
                    )
                    full = replace(
                        full, citations=citations, sections=sections,
                        unanswered_question=unanswered,
                    )  # fmt: skip
                return replace(full, **model_info(probabilities, evidence))
        section_p = None
        if self.sections_model is not None and probabilities.get("question", 0.0) >= ACCEPT_P:
            section_p = self.sections_model.probabilities(features, text, grams)
        grounded = any(k.startswith(GROUNDS) for k in features) or any(
            f"pick:{name}" in features for name in self.intents.requests
        )
        learned = decide_learned(
            self.intents,
            self.policy_index,
            phrases,
            sentences,
            probabilities,
            evidence,
            section_p,
            grounded,
            any(k.startswith(("c:machine_", "subj:c:machine_")) for k in features),
            # A forward, its own words above it or none (then all of it is the new text).
            passes_on=bool(forwarded.strip()) or starts_forward(new_text),
        )
        if (
            learned.low_confidence
            and grounded
            and phrases_stand(phrases)
            and not phrases.spam
            and set(phrases.intents) == set(learned.intents)
            and all(probabilities.get(n, 0.0) >= ACCEPT_P for n in learned.intents)
            and not learned.unanswered_question
            and ("other" in learned.intents or probabilities.get("other", 0.0) < OTHER_DOUBT_P)
        ):
            # Both layers read the same request, the phrase lists surely ("unsubscribe
            # ann@example.org"): two readings that agree are surer than the model alone.
            return replace(learned, low_confidence=False)
        return learned

    def learn(
        self,
        concepts: Concepts,
        examples: Callable[[], Sequence[Example]],
        key: str,
        cache: Path | None = None,
    ) -> Classifier:
        """This classifier with a learned layer trained on `examples()`. `key` fingerprints
        the inputs: a model cached at `cache` with the same key is used as it is (and the
        examples are not even read)."""
        cached = _cached(cache, key)
        if cached is not None:
            return replace(
                self, concepts=concepts, model=cached.intents, sections_model=cached.sections
            )
        chosen = list(examples())
        rows = self.training_rows(concepts, chosen)
        model = train(rows, (*self.intents.names, MACHINE), key, [e.weight for e in chosen])
        sections = self._train_sections(rows, chosen, key)
        _save(cache, Learned(model, sections, key))
        return replace(self, concepts=concepts, model=model, sections_model=sections)

    def _train_sections(
        self,
        rows: Sequence[tuple[dict[str, float], str, frozenset[str]]],
        examples: Sequence[Example],
        key: str,
    ) -> Model | None:
        """The model of which sections answer a question, from the bank's labelled
        questions; a section name that is not a heading of the policy stops start-up."""
        headings = {heading_key(h): h for h in self.policy_index.policy.headings}
        headings[NO_ANSWER] = NO_ANSWER
        labelled = [(row, e) for row, e in zip(rows, examples, strict=True) if e.sections]
        unknown = {s for _, e in labelled for s in e.sections if heading_key(s) not in headings}
        if unknown:
            raise IntentsError(
                f"intents/examples: sections {sorted(unknown)} are not headings of the policy"
            )
        if not labelled:
            return None
        wanted = [frozenset(headings[heading_key(s)] for s in e.sections) for _, e in labelled]
        names = [h for h in self.policy_index.policy.headings if any(h in w for w in wanted)]
        return train(
            [(f, text, w) for ((f, text, _), _), w in zip(labelled, wanted, strict=True)],
            (*names, NO_ANSWER),
            key,
            [e.weight for _, e in labelled],
        )

    def training_rows(
        self, concepts: Concepts, examples: Iterable[Example]
    ) -> list[tuple[dict[str, float], str, frozenset[str]]]:
        """(features, text, labels) per example, as the learned layer is trained on them."""
        rows = []
        for example in examples:
            all_sentences = split_sentences(example.text, example.subject)
            phrases = self._phrases(
                example.text, example.subject, all_sentences, with_citations=False
            )
            sentences, text = self._spoken(all_sentences)
            features = self._features(phrases, sentences, text, concepts, example.forwarded)
            rows.append((features, text, example.labels))
        return rows

    def _spoken(self, sentences: Sequence[Sentence]) -> tuple[list[Sentence], str]:
        """The sentences the sender wrote (list footers left out, as the phrases do), and
        them as one text for the n-grams."""
        sentences = [s for s in sentences if not self.cues.footers.match(s.tokens, s.norm)]
        return sentences, "\n".join(s.text for s in sentences if not s.thread)

    def _features(
        self,
        phrases: Classification,
        sentences: Sequence[Sentence],
        text: str,
        concepts: Concepts | None = None,
        forwarded: str = "",
    ) -> dict[str, float]:
        lexicon = concepts or self.concepts
        assert lexicon is not None
        # A forward's frames are its own features: the sender's old request sent again, or
        # a newsletter or phishing mail shown to us, told apart by the words above it.
        passed_on = split_sentences(forwarded[:FORWARDED_CHARS], "") if forwarded else []
        return {
            **concept_features(lexicon, sentences, phrases.language),
            **concept_features(lexicon, passed_on, phrases.language, segment="fw:"),
            **phrase_features(phrases),
            **length_features(text, sentences),
        }

    def _language_of_short_text(
        self, guess: str, matches: Sequence[Match], sentences: Sequence[Sentence]
    ) -> str:
        """A short text's language: the one its phrases and concept words are of, when the
        language model's guess has none of them ("Abmelden." reads as Dutch to it)."""
        tokens = [t for s in sentences for t in s.tokens]
        if len(tokens) > SHORT_TEXT_WORDS:
            return guess
        spoken = {m.language for m in matches if m.weight > 0 and m.language != ANY_LANGUAGE}
        if self.concepts is not None:
            spoken |= self.concepts.languages_of(tokens)
        if guess in spoken or not spoken:
            return guess
        return spoken.pop() if len(spoken) == 1 else guess

    def _phrases(
        self,
        new_text: str,
        subject: str,
        sentences: Sequence[Sentence],
        with_citations: bool = True,
    ) -> Classification:
        addresses = named_addresses(f"{subject}\n{new_text}", self.intents.own_domains)
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
            if sent.thread or self.cues.footers.match(sent.tokens, sent.norm):
                continue  # a reply's subject or a list footer is not the sender asking now
            is_question, is_request = self.cues.sentence_mode(sent, hits)
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
                negated = self.cues.negated(hit, sent.tokens)
                conditional = self.cues.conditional(hit, sent.tokens, language)
                in_question = (
                    is_question
                    and not is_request
                    and p.intent in self.intents.requests
                    and not negated
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
                intent_name in self.intents.requests and max(w) >= WEIGHTS["phrases"]
                for intent_name, w in sentence_weights.items()
            )
            if is_question and not requested:
                asked.append((si, sentence_asks, topic))

        return decide(
            self.intents,
            self.policy_index,
            sentences,
            self._language_of_short_text(language, matches, sentences),
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
            with_citations,
        )


KEEP_MODELS = 3
# Up to this many words, a mail's language is that of the phrases it matched, when they are
# all of one language: "Abmelden." is too short for the language model (it reads Dutch).
SHORT_TEXT_WORDS = 8


# Features that show the sender named an action (learned.py's names): an object alone
# ("multipart mail") asks for nothing.
GROUNDS = ("c:act_", "c:state_", "subj:c:act_", "subj:c:state_", "fw:c:act_", "strong:")
FORWARDED_CHARS = 4000  # of a forwarded mail, read: its request is at the top, not page 9


def _cached(cache: Path | None, key: str) -> Learned | None:
    if cache is None or not cache.is_file():
        return None
    try:
        model = pickle.loads(cache.read_bytes())  # our own file, beside the example bank
    except Exception:  # a stale or broken cache is retrained, never trusted
        return None
    if not isinstance(model, Learned) or model.fingerprint != key:
        return None
    return model


def _save(cache: Path | None, model: Learned) -> None:
    if cache is None:
        return
    partial = cache.with_name(f"{cache.name}.{os.getpid()}")
    with contextlib.suppress(OSError):  # a read-only install trains at every start instead
        partial.write_bytes(pickle.dumps(model))
        os.replace(partial, cache)  # whole or not at all: other processes may be reading
        # Keep the few newest models (other versions may still run); drop the rest.
        pattern = cache.name.split("-")[0] + "-*.pickle"
        older = sorted(cache.parent.glob(pattern), key=lambda p: p.stat().st_mtime)[:-KEEP_MODELS]
        for stale in older:
            stale.unlink(missing_ok=True)
