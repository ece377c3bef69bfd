"""The learned layer: a linear model (scikit-learn) over what a mail says, trained from the
example bank in `intents/examples/` (and staff corrections).

What the model reads, per mail:
- concept frames per sentence (`concepts.py`): an action and an object in one clause
  ("act_delete+obj_account"), marked when negated, asked about or hypothetical. They are
  the same in every language, so an example in one language teaches all 15;
- the phrase layer's evidence: per intent its score, whether it chose it, negated hits;
- character n-grams of the words themselves (hashed: the model stays a few MB).

It predicts each intent, and "machine" (an auto-reply, a helpdesk acknowledgement, a
challenge), as an independent probability: logistic regression is fitted one label at a
time, and at classification its weights are applied directly (a few array look-ups, no
per-call overhead). `top_features` says which features pushed a decision, for staff.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mmh3
import numpy as np

from privbot.mail.parse import ParseError, parse_message
from privbot.understand.blind import read_batch
from privbot.understand.concepts import Concepts
from privbot.understand.language import normalise
from privbot.understand.scoring import Classification
from privbot.understand.sentences import Sentence

MACHINE = "machine"  # the extra label: a machine wrote it
ACTS = ("act_stop", "act_delete", "act_get", "act_fix", "state_wrong")
MODIFIERS = ("neg", "cond", "ask", "withdraw", "polite")
NEGATION_REACH = 4  # a negation this many words before an action negates it
GRAM_BUCKETS = 2**16  # hashed n-gram columns: 65,536 x labels float32 is under 2 MB
# Inverse regularisation. Leave-one-language-out on the bank, C 1 / 4 / 16: 75.1 / 77.3 / 78.1%.
C = 16.0
STAFF_WEIGHT = 25.0  # one correction must change what the model says about that text
# Part of every cached model's key: change it when the features change.
FEATURES_VERSION = f"8 C={C} grams={GRAM_BUCKETS}"  # 8: compounds split (concepts.py)


@dataclass(frozen=True)
class Example:
    """One labelled text as the classifier reads it (new text and subject)."""

    text: str
    subject: str
    labels: frozenset[str]  # intents, or {"machine"}
    language: str = ""
    weight: float = 1.0  # a staff correction counts as STAFF_WEIGHT bank examples
    # For a question: the policy sections that answer it, or {"none"} (the policy is silent).
    sections: frozenset[str] = frozenset()
    forwarded: str = ""  # the mail a forward passes on (ParsedMessage.forwarded_text)


def read_bank(folder: Path) -> list[Example]:
    """The example bank (`<lang>.jsonl`, the blind sets' format) as the classifier reads
    each mail: parsed like any incoming mail, so quotes and signatures are set aside."""
    out = []
    for mail in read_batch(folder):
        try:
            parsed = parse_message(mail.raw)
        except ParseError:
            continue
        labels = frozenset({MACHINE}) if mail.skip else mail.intents
        sections = mail.sections if "question" in labels else frozenset()
        text, forwarded = parsed.new_text, parsed.forwarded_text
        out.append(Example(text, parsed.subject, labels, mail.language, 1.0, sections, forwarded))
    return out


def staff_examples(rows: Iterable[tuple[str, str, str]]) -> list[Example]:
    """Staff reclassifications (text, intent, language), one example per text."""
    grouped: dict[str, set[str]] = {}
    for text, intent, _language in rows:
        grouped.setdefault(text, set()).add(intent)
    return [
        Example(text, "", frozenset(labels), weight=STAFF_WEIGHT)
        for text, labels in grouped.items()
    ]


def concept_features(
    concepts: Concepts, sentences: Sequence[Sentence], language: str, segment: str = ""
) -> dict[str, float]:
    """Frames and concepts of the mail's sentences, language-free. `segment` prefixes every
    feature of a part read on its own ("fw:", a forwarded mail)."""
    out: dict[str, float] = {}
    for sent in sentences:
        found = concepts.find(sent.tokens, language)
        if not found:
            continue
        here = {c for c, _ in found}
        where: dict[str, list[int]] = {}
        for concept, i in found:
            where.setdefault(concept, []).append(i)
        asking = sent.text.rstrip().endswith("?") or any(i <= 1 for i in where.get("ask", []))
        conditional = "cond" in here
        withdrawn = "withdraw" in here
        # "Could you stop sending me...?" is a request shaped as a question: its own mood,
        # so that the model can tell it from "how do I stop...?".
        polite = "polite" in here
        objects = [c for c in here if c.startswith("obj_")] or ["obj_none"]
        prefix = segment or ("thread:" if sent.thread else "subj:" if sent.is_subject else "")
        # A reply's subject says what the thread was about, not what is asked now: its
        # frames are features of their own, for the model to weigh.
        frame = segment or ("thread:" if sent.thread else "")
        for concept in here:
            _add(out, f"{prefix}c:{concept}")
        for act in ACTS:
            if act not in here:
                continue
            negated = any(
                0 < a - n <= NEGATION_REACH for a in where[act] for n in where.get("neg", [])
            )
            mood = (
                "neg" if negated else "wd" if withdrawn else "pq" if asking and polite
                else "q" if asking else "if" if conditional else "do"
            )  # fmt: skip
            for obj in objects:
                _add(out, f"{frame}f:{mood}:{act}+{obj}")
                _add(out, f"{frame}f:{act}+{obj}")
            _add(out, f"{frame}a:{mood}:{act}")
    for key, value in out.items():
        out[key] = math.log1p(value)
    return out


def phrase_features(phrases: Classification) -> dict[str, float]:
    """What the phrase lists found: strong evidence a privacy officer can edit."""
    out: dict[str, float] = {f"pick:{i}": 1.0 for i in phrases.intents}
    for name, score in phrases.candidates:
        out[f"ph:{name}"] = score
    for m in phrases.matches:
        if m.negated:
            out[f"negated:{m.intent}"] = 1.0
        elif m.in_question:
            out[f"asked:{m.intent}"] = 1.0
        elif m.conditional:
            out[f"if:{m.intent}"] = 1.0
        elif m.kind == "strong":
            out[f"strong:{m.intent}"] = 1.0
    if phrases.spam:
        out["spam"] = 1.0
    return out


def length_features(text: str, sentences: Sequence[Sentence]) -> dict[str, float]:
    words = len(text.split())
    return {
        f"len:{min(int(math.log2(words + 1)), 9)}": 1.0,
        f"sents:{min(len(sentences), 8)}": 1.0,
        "has_q": float("?" in text),
    }


@dataclass(frozen=True)
class Model:
    labels: tuple[str, ...]
    vocabulary: dict[str, int]  # named feature -> row of `named`
    named: np.ndarray  # named features x labels
    grams: np.ndarray  # hashed n-grams x labels
    intercepts: np.ndarray
    fingerprint: str  # of the inputs it was trained on: what a cached model is checked against

    def probabilities(
        self,
        features: dict[str, float],
        text: str,
        grams: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """Per label; `grams`: `ngrams(text)` when the caller has them already."""
        scores = self.intercepts.astype(np.float64)
        rows = [(self.vocabulary[k], v) for k, v in features.items() if k in self.vocabulary]
        if rows:
            index, values = zip(*rows, strict=True)
            scores = scores + np.asarray(values) @ self.named[list(index)]
        index_g, values_g = ngrams(text) if grams is None else grams
        if len(index_g):
            scores = scores + values_g @ self.grams[index_g]
        return {label: _sigmoid(float(s)) for label, s in zip(self.labels, scores, strict=True)}

    def top_features(
        self, features: dict[str, float], label: str, n: int = 5
    ) -> list[tuple[str, float]]:
        """The named features that pushed `label` up the most (n-grams are not named)."""
        column = self.labels.index(label)
        pushes = []
        for name, value in features.items():
            row = self.vocabulary.get(name)
            if row is not None and self.named[row, column] * value > 0:
                pushes.append((name, round(float(self.named[row, column] * value), 3)))
        return sorted(pushes, key=lambda p: -p[1])[:n]


@dataclass(frozen=True)
class Learned:
    """What training makes, and what is cached: the intent model, and the model of which
    policy sections answer a question (None when the bank labels no sections)."""

    intents: Model
    sections: Model | None
    fingerprint: str


def ngrams(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Character 3-5-grams of each word (padded with spaces), hashed with MurmurHash3
    (mmh3: the same values as scikit-learn's murmurhash3_32) into GRAM_BUCKETS;
    L2-normalised counts. (indices, values)"""
    words = normalise(text).split()
    if not words:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    hashed = np.concatenate([_word_buckets(word[:40]) for word in words])
    index, counts = np.unique(hashed, return_counts=True)
    return index, counts / np.sqrt((counts**2).sum())


@lru_cache(maxsize=200_000)
def _word_buckets(word: str) -> np.ndarray:
    """A word's gram columns (cached: the same words recur in every mail of a language)."""
    padded = f" {word} "
    grams = [padded[i : i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    return np.array([mmh3.hash(g, 0, signed=False) % GRAM_BUCKETS for g in grams], dtype=np.int64)


def train(
    rows: Sequence[tuple[dict[str, float], str, frozenset[str]]],
    labels: Sequence[str],
    key: str,
    weights: Sequence[float] | None = None,
) -> Model:
    """Fit one logistic regression per label over (features, text, labels) rows."""
    # Imported here: scikit-learn and SciPy add about 100 MB to every process that imports
    # them, and a serving process only trains when its cached model is stale.
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    vocabulary: dict[str, int] = {}
    for features, _, _ in rows:
        for name in features:
            vocabulary.setdefault(name, len(vocabulary))
    width = len(vocabulary) + GRAM_BUCKETS
    data, indices, pointers = [], [], [0]
    for features, text, _ in rows:
        for name, value in features.items():
            indices.append(vocabulary[name])
            data.append(value)
        gram_index, gram_values = ngrams(text)
        indices += (gram_index + len(vocabulary)).tolist()
        data += gram_values.tolist()
        pointers.append(len(indices))
    x = sparse.csr_matrix((data, indices, pointers), shape=(len(rows), width))
    columns, intercepts = [], []
    for label in labels:
        y = np.array([label in r[2] for r in rows], dtype=int)
        if y.min() == y.max():  # a label with no example (or only examples): never / always
            columns.append(np.zeros(width))
            intercepts.append(8.0 if y.max() else -8.0)
            continue
        model = LogisticRegression(C=C, solver="liblinear", random_state=0)  # reproducible
        model.fit(x, y, sample_weight=None if weights is None else np.asarray(weights))
        columns.append(model.coef_[0])
        intercepts.append(float(model.intercept_[0]))
    matrix = np.column_stack(columns).astype(np.float32)
    return Model(
        tuple(labels),
        vocabulary,
        matrix[: len(vocabulary)],
        matrix[len(vocabulary) :],
        np.array(intercepts),
        key,
    )


def cross_validate(
    rows: Sequence[tuple[dict[str, float], str, frozenset[str]]],
    labels: Sequence[str],
    folds: int = 5,
) -> list[frozenset[str]]:
    """Each row's labels as predicted by a model trained without its fold (every label
    at p >= 0.5, else the likeliest): how the bank itself is learned, for `privbot train`.
    The blind sets, not this, say how privbot does on mail nobody tuned it for."""
    predicted: list[frozenset[str]] = [frozenset()] * len(rows)
    for fold in range(folds):
        held = [i for i in range(len(rows)) if i % folds == fold]
        model = train([r for i, r in enumerate(rows) if i % folds != fold], labels, "cv")
        for i in held:
            p = model.probabilities(rows[i][0], rows[i][1])
            chosen = frozenset(k for k, v in p.items() if v >= 0.5)
            predicted[i] = chosen or frozenset({max(p, key=p.__getitem__)})
    return predicted


def inputs_key(paths: Iterable[Path], extra: Iterable[tuple[str, str, str]]) -> str:
    """A fingerprint of everything a model is trained from: the data files' bytes, staff
    examples and the features' version. Cheap: no mail is read to compute it."""
    digest = hashlib.sha256(FEATURES_VERSION.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for row in extra:
        digest.update(repr(row).encode())
    return digest.hexdigest()[:20]


def _add(out: dict[str, float], key: str) -> None:
    out[key] = out.get(key, 0.0) + 1.0


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(value, 30.0), -30.0)))
