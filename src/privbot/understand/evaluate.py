"""Measure the classifier on the shared corpora and on our own labelled data.

    python -m privbot.understand.evaluate [--corpora DIR] [--labelled FILE] [--no-progress]

Corpora (see /work/shared/corpora/README.md): GDPR request letters (their placeholders are
filled or stripped here), PrivacyQA questions (all should be `question`), SpamAssassin
spam/ham (no action intent may come out). Labelled TSV: columns text, intents, language;
"\\n" in text stands for a line break.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.policy
import html
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from privbot.understand.classify import Classification, Classifier
from privbot.understand.intents import ACTION_INTENTS, REQUIRED_INTENTS

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CORPORA = REPO.parent / "shared" / "corpora"

# Source request type -> our intent (README section 1); None: no direct intent.
LETTER_INTENTS: dict[str, str | None] = {
    "access": "data_access",
    "erasure": "deletion",
    "deletion": "deletion",
    "rectification": "correction",
    "objection": "opt_out",
    "admonition": None,
    "reminder": None,
    "escalation": None,
    "complaint": None,
}
# The yourdigitalrights deletion letter also withdraws consent and objects: deletion first
# among several intents counts as right for it.
MULTI_INTENT_TYPES = {"deletion"}

_FILLS = {
    "id_data": "Name: Alex Example, customer number 4711, e-mail alex.example@example.org",
    "runs_list": "JunoCloud.me",
    "rectification_data": "Surname: Novak (previously recorded as Horvat)",
    "erasure_data": "my account alex.example@example.org and all files in it",
}
_JINJA_FILLS = {
    "companyname": "JunoCloud.me",
    "companyurl": "junocloud.me",
    "name": "Alex Example",
    "identifyinginfo": _FILLS["id_data"],
    "regulation.longname": "General Data Protection Regulation",
    "regulation.displayname": "GDPR",
    "regulation.timelimit": "30",
}


@dataclass(frozen=True)
class Outcome:
    source: str
    language: str
    expected: tuple[str, ...]
    predicted: tuple[str, ...]
    correct: bool
    detail: str = ""


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
                actions = [o for o in rows if set(o.predicted) & set(ACTION_INTENTS)]
                flagged = [o for o in rows if "spam" in o.detail]
                out.append(
                    f"SpamAssassin {label}: {len(rows)} mails, {len(actions)} with an action "
                    f"intent, {len(flagged)} flagged spam"
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

    def run(text: str, subject: str = "") -> Classification:
        start = time.perf_counter()
        result = classifier.classify(text, subject)
        timings.append(time.perf_counter() - start)
        return result

    if corpora is not None and corpora.is_dir():
        letters, letters_other = _letters(corpora / "gdpr_request_letters", run, progress)
        privacyqa = _privacyqa(corpora / "privacyqa_questions" / "questions.tsv", run, progress)
        spam, note = _spam(corpora / "spam_ham_spamassassin_testdata", run, progress)
        notes.append(note)
    elif corpora is not None:
        notes.append(f"corpora not found at {corpora}: corpus figures skipped")
    paths = [labelled] if isinstance(labelled, Path) else list(labelled or [])
    reports = tuple(_labelled(p, run, progress) for p in paths)
    ms = 1000 * sum(timings) / len(timings) if timings else 0.0
    return EvalReport(
        tuple(letters),
        tuple(letters_other),
        tuple(privacyqa),
        tuple(spam),
        reports,
        ms,
        tuple(notes),
    )


# -- corpora -------------------------------------------------------------------------------


def fill_letter(text: str) -> str:
    """Fill or strip a letter template's placeholders and explanatory header."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines[:20]):
        if line.strip() == "---":  # sample letters: explanation above this line
            lines = lines[i + 1 :]
            break
    text = "\n".join(lines)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.DOTALL)

    def jinja(m: re.Match[str]) -> str:
        return _JINJA_FILLS.get(m.group(1).strip().lower(), "")

    text = re.sub(r"\{\{(.*?)\}\}", jinja, text)
    text = re.sub(r"\{(\w+)\}", lambda m: _FILLS.get(m.group(1), ""), text)
    text = re.sub(r"\{[^{}]*\}", "", text)  # free-text instructions to the sender
    for _ in range(3):  # optional blocks may nest: keep their text, as if chosen
        text = re.sub(r"\[\w+>([^\[\]]*)\]", r"\1", text)
    text = re.sub(r"\[([^\[\]]*)\]", r"\1", text)
    return re.sub(r"</?\w+>", "", text)


def _letters(
    folder: Path, run: Callable[[str], Classification], progress: bool
) -> tuple[list[Outcome], list[Outcome]]:
    rows = _read_csv(folder / "labels.csv")
    scored, other = [], []
    for row in _progress(rows, "letters", progress):
        intent = LETTER_INTENTS.get(row["request_type"])
        language = row["language"].split(" ")[0]
        text = fill_letter((folder / row["file"]).read_text(encoding="utf-8"))
        result = run(text)
        if intent is None:
            other.append(Outcome(row["file"], language, ("none",), result.intents, True))
            continue
        if row["request_type"] in MULTI_INTENT_TYPES:
            correct = result.intents[0] == intent
        else:
            correct = result.intents == (intent,)
        scored.append(Outcome(row["file"], language, (intent,), result.intents, correct))
    return scored, other


def _privacyqa(path: Path, run: Callable[[str], Classification], progress: bool) -> list[Outcome]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    out = []
    for row in _progress(rows, "privacyqa", progress):
        result = run(row["question"])
        out.append(
            Outcome(
                row["question"],
                "en",
                ("question",),
                result.intents,
                result.intents[0] == "question",
            )
        )
    return out


def _spam(
    folder: Path, run: Callable[[str, str], Classification], progress: bool
) -> tuple[list[Outcome], str]:
    if not folder.is_dir():
        return [], "spam corpus missing"
    parser, note = _parser()
    out = []
    for row in _progress(_read_csv(folder / "labels.csv"), "spam", progress):
        text, subject = parser((folder / row["file"]).read_bytes())
        result = run(text, subject)
        bad = bool(set(result.intents) & set(ACTION_INTENTS))
        correct = not bad and (result.spam or row["label"] == "nice")
        out.append(
            Outcome(
                row["file"],
                result.language,
                (row["label"],),
                result.intents,
                correct,
                "spam" if result.spam else "",
            )
        )
    return out, note


def _parser() -> tuple[Callable[[bytes], tuple[str, str]], str]:
    """The pipeline's parser when it is there, else a small stdlib fallback."""
    try:
        from privbot.mail.parse import parse_message
    except ImportError:
        return _fallback_parse, "spam mails parsed with evaluate.py's stdlib fallback"

    def parse(raw: bytes) -> tuple[str, str]:
        try:
            message = parse_message(raw)
        except Exception:  # one broken mail must not stop the evaluation
            return _fallback_parse(raw)
        return message.new_text, message.subject

    return parse, "spam mails parsed with privbot.mail.parse.parse_message"


def _fallback_parse(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg.get("subject", "") or "")
    try:
        part = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
        content = part.get_content() if part is not None else ""
    except (KeyError, LookupError, UnicodeError, AttributeError):
        content = raw.decode("latin-1", "replace")
    if part is not None and part.get_content_type() == "text/html":
        content = html.unescape(re.sub(r"<[^>]+>", " ", content))
    return content, subject


def _labelled(path: Path, run: Callable[[str], Classification], progress: bool) -> LabelledReport:
    rows = read_labelled(path)
    outcomes = []
    for text, intents, language in _progress(rows, path.name, progress):
        result = run(text)
        outcomes.append(
            Outcome(text, language, intents, result.intents, set(result.intents) == set(intents))
        )
    return _report(path.name, outcomes)


def read_labelled(path: Path) -> list[tuple[str, tuple[str, ...], str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            (
                row["text"].replace("\\n", "\n"),
                tuple(i.strip() for i in row["intents"].split(",") if i.strip()),
                row["language"].strip(),
            )
            for row in reader
        ]


def _report(name: str, outcomes: Sequence[Outcome]) -> LabelledReport:
    stats = []
    for intent in REQUIRED_INTENTS:
        tp = sum(1 for o in outcomes if intent in o.expected and intent in o.predicted)
        fp = sum(1 for o in outcomes if intent not in o.expected and intent in o.predicted)
        fn = sum(1 for o in outcomes if intent in o.expected and intent not in o.predicted)
        stats.append(IntentStats(intent, tp, fp, fn))
    confusion = Counter((o.expected[0], o.predicted[0]) for o in outcomes)
    return LabelledReport(name, tuple(outcomes), tuple(stats), dict(confusion))


# -- helpers -------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _progress(items: Sequence[object], label: str, show: bool) -> Iterable:  # type: ignore[type-arg]
    """A plain stderr progress bar: label [#####.....] done/total."""
    total = len(items)
    for i, item in enumerate(items, 1):
        if show and (i == total or i % max(1, total // 50) == 0):
            filled = int(30 * i / max(total, 1))
            sys.stderr.write(f"\r{label:<12} [{'#' * filled}{'.' * (30 - filled)}] {i}/{total}")
            if i == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        yield item


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--labelled", type=Path, action="append", default=None)
    parser.add_argument("--intents", type=Path, default=REPO / "intents")
    parser.add_argument("--policy", type=Path, default=REPO / "replies" / "policy.md")
    parser.add_argument("--topics", type=Path, default=REPO / "replies" / "policy_topics.toml")
    parser.add_argument("--no-corpora", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    classifier = Classifier.from_paths(args.intents, args.policy, args.topics)
    labelled = args.labelled
    if labelled is None:
        labelled = [REPO / "tests" / "data" / "labelled" / "dev.tsv"]
    report = evaluate(
        classifier,
        None if args.no_corpora else args.corpora,
        [p for p in labelled if p.is_file()],
        progress=not args.no_progress,
    )
    print(report.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
