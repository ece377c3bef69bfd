"""The blind sets in `tests/data/blind/`: realistic mail written by people who never saw the
classifier, read into messages and measured the way users meet privbot.

A batch is never tuned on (see its README). What privbot makes of each mail (`Seen`) comes
from the caller, who runs the pipeline's examination and plan without writing anything; this
module only reads the batch and counts.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path

from privbot.understand.policy import heading_key
from privbot.understand.scoring import NO_ANSWER

SUPPORT = "support@junocloud.me"
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
_DATE = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


class BlindSetError(ValueError):
    """A batch file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class BlindMail:
    id: str
    language: str
    raw: bytes
    intents: frozenset[str]  # the exact set the writer wants; empty for machine mail
    skip: bool  # a machine wrote it: no reply
    sections: frozenset[str]  # for a question: the sections that answer it, or {"none"}
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Seen:
    """What privbot would do with one mail: screened, or understood and planned."""

    screened: bool
    intents: frozenset[str] = frozenset()
    low_confidence: bool = False
    sections: frozenset[str] = frozenset()  # the policy sections the reply quotes
    unanswered: bool = False  # the reply says the policy has no answer (staff will)
    language: str = ""  # the language the reply is written in
    quoted_twice: bool = False  # the reply quotes one clause more than once
    opt_out_applied: bool = False
    request_tickets: frozenset[str] = frozenset()  # requests staff would get a ticket for


def read_batch(folder: Path) -> list[BlindMail]:
    """Every mail of a batch folder (`<lang>.jsonl`), as raw messages, in file order."""
    mails: list[BlindMail] = []
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise BlindSetError(f"{folder}: no <lang>.jsonl files")
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                mails.append(_mail(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise BlindSetError(f"{path.name}:{number}: {exc}") from None
    return mails


def _mail(row: dict[str, object]) -> BlindMail:
    headers = row["headers"]
    if not isinstance(headers, dict):
        raise ValueError("headers: must be an object")
    # compat32's MIMEText: the modern header registry cost more than the whole evaluation.
    msg = MIMEText(str(row["body"]), "plain", "utf-8")
    for name, value in headers.items():
        text = " ".join(str(value).split())
        if text.isascii():
            msg[str(name)] = text
        elif str(name).lower() in ADDRESS_HEADERS:
            msg[str(name)] = ", ".join(formataddr(a, "utf-8") for a in getaddresses([text]))
        else:
            msg[str(name)] = Header(text, "utf-8").encode()
    if "To" not in msg:
        msg["To"] = SUPPORT
    msg["Date"] = format_datetime(_DATE)
    msg["Message-ID"] = f"<blind-{row['id']}@example.org>"
    return BlindMail(
        id=str(row["id"]),
        language=str(row["lang"]),
        raw=msg.as_bytes(),
        intents=frozenset(str(i) for i in row["intents"]),  # type: ignore[attr-defined]
        skip=bool(row["skip"]),
        sections=frozenset(str(s) for s in row.get("sections") or ()),  # type: ignore[attr-defined]
        kinds=tuple(str(k) for k in row.get("kinds") or ()),  # type: ignore[attr-defined]
    )


@dataclass(frozen=True)
class Judged:
    mail: BlindMail
    seen: Seen
    requests: frozenset[str]

    @property
    def exact(self) -> bool:
        if self.mail.skip:
            return self.seen.screened
        return not self.seen.screened and self.seen.intents == self.mail.intents

    @property
    def confidently_wrong(self) -> bool:
        return not self.exact and not self.seen.low_confidence

    @property
    def unasked_actions(self) -> list[str]:
        """An opt-out applied or a request ticket opened that the mail did not ask for."""
        out = []
        if self.seen.opt_out_applied and "opt_out" not in self.mail.intents:
            out.append("opt_out applied")
        out += [f"{i} ticket" for i in sorted(self.seen.request_tickets - self.mail.intents)]
        return out

    @property
    def missed_requests(self) -> frozenset[str]:
        if self.mail.skip:
            return frozenset()
        asked = self.mail.intents & self.requests
        return asked - (frozenset() if self.seen.screened else self.seen.intents)


@dataclass(frozen=True)
class BlindReport:
    name: str
    judged: tuple[Judged, ...]
    intent_names: tuple[str, ...] = field(default_factory=tuple)

    def _share(self, rows: Sequence[Judged], test: Callable[[Judged], bool]) -> float:
        return sum(1 for j in rows if test(j)) / len(rows) if rows else 0.0

    @property
    def exact(self) -> float:
        return self._share(self.judged, lambda j: j.exact)

    def exact_by_language(self) -> dict[str, float]:
        groups: dict[str, list[Judged]] = defaultdict(list)
        for j in self.judged:
            groups[j.mail.language].append(j)
        return {lang: self._share(rows, lambda j: j.exact) for lang, rows in sorted(groups.items())}

    @property
    def confidently_wrong(self) -> float:
        return self._share(self.judged, lambda j: j.confidently_wrong)

    @property
    def unasked_actions(self) -> list[Judged]:
        return [j for j in self.judged if j.unasked_actions]

    @property
    def machines_answered(self) -> list[Judged]:
        return [j for j in self.judged if j.mail.skip and not j.seen.screened]

    @property
    def people_screened(self) -> list[Judged]:
        return [j for j in self.judged if not j.mail.skip and j.seen.screened]

    def _questions(self, answerable: bool) -> list[Judged]:
        return [
            j
            for j in self.judged
            if "question" in j.mail.intents
            and (NO_ANSWER not in j.mail.sections) == answerable
            and j.mail.sections
        ]

    @property
    def section_hit(self) -> float:
        """Answerable questions seen as questions whose reply quotes an answering section."""
        rows = self._questions(answerable=True)
        return self._share(
            rows,
            lambda j: (
                "question" in j.seen.intents
                and not j.seen.unanswered
                and bool(
                    {heading_key(s) for s in j.seen.sections}
                    & {heading_key(s) for s in j.mail.sections}
                )
            ),
        )

    @property
    def honest_gap(self) -> float:
        """Questions the policy does not answer, for which the reply says so (no quote)."""
        rows = self._questions(answerable=False)
        return self._share(rows, lambda j: "question" in j.seen.intents and j.seen.unanswered)

    def format(self) -> str:
        rows = self.judged
        n = len(rows)
        out = [f"Blind set {self.name}: {n} mails (never tuned on)"]
        out.append(f"  exact intent set (machine mail: screened): {_count(rows, 'exact')} "
                   f"({self.exact:.1%})")  # fmt: skip
        out.append("  per language: " + ", ".join(
            f"{lang} {share:.0%}" for lang, share in self.exact_by_language().items()
        ))  # fmt: skip
        for name in self.intent_names:
            having = [j for j in rows if name in j.mail.intents]
            predicted = [j for j in rows if name in j.seen.intents and not j.seen.screened]
            hit = [j for j in having if name in j.seen.intents and not j.seen.screened]
            if having or predicted:
                out.append(
                    f"  {name:<12} asked {len(having):>3}, exact {_count(having, 'exact'):>9}, "
                    f"recall {len(hit) / len(having) if having else 0:.0%}, "
                    f"precision {len(hit) / len(predicted) if predicted else 0:.0%}"
                )
        wrong = [j for j in rows if j.confidently_wrong]
        out.append(f"  confidently wrong (wrong, not low confidence): {len(wrong)} "
                   f"({self.confidently_wrong:.1%})")  # fmt: skip
        unasked = self.unasked_actions
        out.append(f"  unasked actions: {len(unasked)} mails "
                   f"({len(unasked) / n * 200 if n else 0:.1f} per 200)")  # fmt: skip
        out += [f"    {j.mail.id}: {', '.join(j.unasked_actions)}" for j in unasked[:15]]
        missed = Counter(i for j in rows for i in j.missed_requests)
        out.append("  missed requests: " + (", ".join(
            f"{i} {c}" for i, c in sorted(missed.items())) or "none"))  # fmt: skip
        machines = sum(1 for j in rows if j.mail.skip)
        out.append(f"  screening: {len(self.machines_answered)} of {machines} machine mails "
                   f"answered; {len(self.people_screened)} of {n - machines} people "
                   "screened")  # fmt: skip
        out += [f"    answered machine: {j.mail.id}" for j in self.machines_answered[:15]]
        out += [f"    screened person: {j.mail.id}" for j in self.people_screened[:15]]
        answerable, gaps = self._questions(True), self._questions(False)
        out.append(f"  question sections hit: {self.section_hit:.0%} of {len(answerable)}; "
                   f"honest gap: {self.honest_gap:.0%} of {len(gaps)}")  # fmt: skip
        people = [j for j in rows if not j.mail.skip and not j.seen.screened]
        native = sum(j.seen.language == j.mail.language for j in people)
        twice = sum(j.seen.quoted_twice for j in people)
        out.append(f"  replies in the writer's language: {native} of {len(people)}; "
                   f"quoting a clause twice: {twice}")  # fmt: skip
        out += _confusion(rows, self.intent_names)
        return "\n".join(out)


def judge(
    name: str,
    mails: Iterable[BlindMail],
    look: Callable[[BlindMail], Seen],
    intent_names: Sequence[str],
    requests: frozenset[str],
) -> BlindReport:
    """Run `look` on every mail and judge what it saw against the labels."""
    judged = tuple(Judged(m, look(m), requests) for m in mails)
    return BlindReport(name, judged, tuple(intent_names))


def _count(rows: Sequence[Judged], attribute: str) -> str:
    return f"{sum(1 for j in rows if getattr(j, attribute))} / {len(rows)}"


def _first(intents: frozenset[str], names: Sequence[str], screened: bool) -> str:
    if screened:
        return "(screened)"
    ordered = [n for n in names if n in intents]
    return "+".join(ordered) if len(ordered) > 1 else (ordered[0] if ordered else "(none)")


def _confusion(rows: Sequence[Judged], names: Sequence[str]) -> list[str]:
    """The most frequent (expected -> seen) mistakes, by intent set."""
    mistakes = Counter(
        (_first(j.mail.intents, names, j.mail.skip), _first(j.seen.intents, names, j.seen.screened))
        for j in rows
        if not j.exact
    )
    lines = ["  most common mistakes (expected -> seen):"]
    lines += [f"    {want} -> {got}: {count}" for (want, got), count in mistakes.most_common(12)]
    return lines
