"""Reading the evaluation corpora: GDPR request letters (placeholders filled or stripped),
PrivacyQA questions, SpamAssassin spam/ham, and labelled TSV files; each row classified
through `run` and returned as an `Outcome`. Scoring and the report are in `evaluate.py`."""

from __future__ import annotations

import csv
import email
import email.policy
import html
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from privbot.mail.parse import parse_message
from privbot.mail.screen import ScreenContext, screen
from privbot.understand.scoring import Classification

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


def letters(
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


def privacyqa(path: Path, run: Callable[[str], Classification], progress: bool) -> list[Outcome]:
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


def spam(
    folder: Path,
    run: Callable[[str, str, str], Classification],
    progress: bool,
    requests: frozenset[str],
) -> tuple[list[Outcome], str]:
    """`requests`: the intents that would act on a mail (spam must have none acted on)."""
    if not folder.is_dir():
        return [], "spam corpus missing"
    parser, note = mail_parser()
    # As the pipeline does: mail whose headers say a machine or a list sent it is never
    # classified (the corpus has list mail with Precedence: bulk among the ham).
    context = ScreenContext(frozenset({"support@junocloud.me"}), "junocloud.me")
    out = []
    for row in _progress(_read_csv(folder / "labels.csv"), "spam", progress):
        raw = (folder / row["file"]).read_bytes()
        reason = _header_screen(raw, context)
        if reason is not None:
            out.append(Outcome(row["file"], "", (row["label"],), (), True, "headers"))
            continue
        result = run(*parser(raw))
        # Acted on: a request read surely enough to act (a low-confidence reading goes to
        # staff and does nothing). Screened: spam, or machine wording (no reply at all).
        screened = result.spam or result.machine
        acted = bool(set(result.intents) & requests) and not result.low_confidence and not screened
        correct = not acted and (screened or row["label"] == "nice")
        out.append(
            Outcome(
                row["file"],
                result.language,
                (row["label"],),
                result.intents,
                correct,
                "acted" if acted else "screened" if screened else "",
            )
        )
    return out, note


def _header_screen(raw: bytes, context: ScreenContext) -> str | None:
    try:
        return screen(parse_message(raw), context)
    except Exception:  # what cannot be parsed is classified from the fallback's text
        return None


def mail_parser() -> tuple[Callable[[bytes], tuple[str, str, str]], str]:
    """The pipeline's parser, with a small stdlib fallback for a mail it cannot read:
    (new text, subject, the mail a forward passes on), as the pipeline classifies them."""

    def parse(raw: bytes) -> tuple[str, str, str]:
        try:
            message = parse_message(raw)
        except Exception:  # one broken mail must not stop the evaluation
            return (*_fallback_parse(raw), "")
        return message.new_text, message.subject, message.forwarded_text

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


def labelled_outcomes(
    path: Path, run: Callable[[str], Classification], progress: bool
) -> list[Outcome]:
    rows = read_labelled(path)
    outcomes = []
    for text, intents, language in _progress(rows, path.name, progress):
        result = run(text)
        outcomes.append(
            Outcome(text, language, intents, result.intents, set(result.intents) == set(intents))
        )
    return outcomes


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
