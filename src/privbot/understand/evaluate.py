"""Measure the classifier on the shared corpora and on our own labelled data (`privbot eval`).

Corpora (see /work/shared/corpora/README.md): GDPR request letters (their placeholders are
filled or stripped here), PrivacyQA questions (all should be `question`), SpamAssassin
spam/ham (nothing may be acted on). Labelled TSV: columns text, intents, language;
"\\n" in text stands for a line break.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from privbot.understand import corpora as corpus
from privbot.understand.classify import Classification, Classifier
from privbot.understand.corpora import Outcome
from privbot.understand.intents import REQUIRED_INTENTS


@dataclass(frozen=True)
class IntentStats:
    intent: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class LabelledReport:
    name: str
    outcomes: tuple[Outcome, ...]
    stats: tuple[IntentStats, ...]
    confusion: dict[tuple[str, str], int]

    @property
    def macro_f1(self) -> float:
        used = [s for s in self.stats if s.tp + s.fn > 0]
        return sum(s.f1 for s in used) / len(used) if used else 0.0

    @property
    def exact(self) -> float:
        return sum(o.correct for o in self.outcomes) / max(len(self.outcomes), 1)


@dataclass(frozen=True)
class EvalReport:
    letters: tuple[Outcome, ...] = ()
    letters_other: tuple[Outcome, ...] = ()  # follow-ups and complaints: reported only
    privacyqa: tuple[Outcome, ...] = ()
    spam: tuple[Outcome, ...] = ()
    labelled: tuple[LabelledReport, ...] = ()
    ms_per_message: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    requests: frozenset[str] = frozenset()  # intents that act on a mail

    @property
    def letters_accuracy(self) -> float:
        return _share(self.letters)

    @property
    def privacyqa_accuracy(self) -> float:
        return _share(self.privacyqa)

    def format(self) -> str:
        out: list[str] = []
        if self.letters:
            out.append(
                f"GDPR request letters: {_count(self.letters)} exactly right "
                f"({self.letters_accuracy:.1%}); deletion letters (yourdigitalrights) count "
                "when deletion is among the intents and first"
            )
            out.extend(_by(self.letters, lambda o: o.language, "  language"))
            out.extend(_by(self.letters, lambda o: o.expected[0], "  intent"))
            out.extend(
                f"  WRONG {o.source}: got {','.join(o.predicted)}"
                for o in self.letters
                if not o.correct
            )
            if self.letters_other:
                got = Counter(",".join(o.predicted) for o in self.letters_other)
                out.append(
                    "  follow-ups/complaints (excluded): "
                    + ", ".join(f"{k}: {v}" for k, v in got.most_common())
                )
        if self.privacyqa:
            got = Counter(o.predicted[0] for o in self.privacyqa)
            out.append(
                f"PrivacyQA questions: {_count(self.privacyqa)} classified as question "
                f"({self.privacyqa_accuracy:.1%}); first intent: "
                + ", ".join(f"{k} {v}" for k, v in got.most_common())
            )
        if self.spam:
            for label in ("spam", "nice"):
                rows = [o for o in self.spam if o.expected[0] == label]
                if not rows:
                    continue
                actions = [o for o in rows if o.detail == "acted"]
                staff = [
                    o for o in rows if set(o.predicted) & self.requests and o.detail != "acted"
                ]
                flagged = [o for o in rows if o.detail == "screened"]
                out.append(
                    f"SpamAssassin {label}: {len(rows)} mails, {len(actions)} acted on, "
                    f"{len(staff)} read as a request but left to staff (low confidence), "
                    f"{len(flagged)} screened"
                )
                out.extend(f"  ACTION {o.source}: {','.join(o.predicted)}" for o in actions)
        for rep in self.labelled:
            out.append(
                f"Labelled {rep.name}: {len(rep.outcomes)} rows, exact intents {rep.exact:.1%}, "
                f"macro-F1 {rep.macro_f1:.3f}"
            )
            out.append(f"  {'intent':<12} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>4}")
            for s in rep.stats:
                out.append(
                    f"  {s.intent:<12} {s.precision:6.2f} {s.recall:6.2f} {s.f1:6.2f} "
                    f"{s.tp + s.fn:4d}"
                )
            out.extend(_confusion(rep.confusion))
            out.extend(_by(rep.outcomes, lambda o: o.language, "  language"))
            out.extend(
                f"  WRONG [{o.language}] {o.source[:90]!r}: want {','.join(o.expected)} "
                f"got {','.join(o.predicted)}"
                for o in rep.outcomes
                if not o.correct
            )
        if self.ms_per_message:
            out.append(f"Speed: {self.ms_per_message:.3f} ms per message (mean, one core)")
        out.extend(self.notes)
        return "\n".join(out)


def evaluate(
    classifier: Classifier,
    corpora: Path | None,
    labelled: Path | Sequence[Path] | None = None,
    progress: bool = False,
) -> EvalReport:
    letters: list[Outcome] = []
    letters_other: list[Outcome] = []
    privacyqa: list[Outcome] = []
    spam: list[Outcome] = []
    notes: list[str] = []
    timings: list[float] = []

    requests = classifier.intents.requests

    def run(text: str, subject: str = "", forwarded: str = "") -> Classification:
        start = time.perf_counter()
        result = classifier.classify(text, subject, forwarded)
        timings.append(time.perf_counter() - start)
        return result

    if corpora is not None and corpora.is_dir():
        letters, letters_other = corpus.letters(corpora / "gdpr_request_letters", run, progress)
        privacyqa = corpus.privacyqa(
            corpora / "privacyqa_questions" / "questions.tsv", run, progress
        )
        spam, note = corpus.spam(
            corpora / "spam_ham_spamassassin_testdata", run, progress, requests
        )
        notes.append(note)
    elif corpora is not None:
        notes.append(f"corpora not found at {corpora}: corpus figures skipped")
    paths = [labelled] if isinstance(labelled, Path) else list(labelled or [])
    reports = tuple(_report(p.name, corpus.labelled_outcomes(p, run, progress)) for p in paths)
    ms = 1000 * sum(timings) / len(timings) if timings else 0.0
    return EvalReport(
        tuple(letters),
        tuple(letters_other),
        tuple(privacyqa),
        tuple(spam),
        reports,
        ms,
        tuple(notes),
        requests,
    )


def _report(name: str, outcomes: Sequence[Outcome]) -> LabelledReport:
    stats = []
    for intent in REQUIRED_INTENTS:
        tp = sum(1 for o in outcomes if intent in o.expected and intent in o.predicted)
        fp = sum(1 for o in outcomes if intent not in o.expected and intent in o.predicted)
        fn = sum(1 for o in outcomes if intent in o.expected and intent not in o.predicted)
        stats.append(IntentStats(intent, tp, fp, fn))
    confusion = Counter((o.expected[0], o.predicted[0]) for o in outcomes)
    return LabelledReport(name, tuple(outcomes), tuple(stats), dict(confusion))


# -- helpers ------------------------------------------------------------------------------


def _share(outcomes: Sequence[Outcome]) -> float:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0


def _count(outcomes: Sequence[Outcome]) -> str:
    return f"{sum(o.correct for o in outcomes)}/{len(outcomes)}"


def _by(outcomes: Sequence[Outcome], key: Callable[[Outcome], str], label: str) -> list[str]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(key(o), []).append(o)
    return [f"{label} {k:<12} {_count(v):>7} ({_share(v):.0%})" for k, v in sorted(groups.items())]


def _confusion(confusion: dict[tuple[str, str], int]) -> list[str]:
    names = list(REQUIRED_INTENTS)
    short = [n[:8] for n in names]
    lines = ["  confusion (rows: expected first intent, columns: predicted first intent)"]
    lines.append("  " + " " * 12 + " ".join(f"{s:>8}" for s in short))
    for gold in names:
        row = [confusion.get((gold, pred), 0) for pred in names]
        lines.append(f"  {gold:<12}" + " ".join(f"{v:>8}" for v in row))
    return lines
