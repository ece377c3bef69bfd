"""The classifier on one core: the real corpora, raw mail through `examine`, long newsletters."""

from __future__ import annotations

import contextlib
import csv
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.harness import bar, summary
from privbot.app import App
from privbot.pipeline.examine import examine
from privbot.understand.corpora import fill_letter
from privbot.understand.corpora import mail_parser as _parser
from testing.apps import mail

T = TypeVar("T")


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin the calling thread to one CPU (Linux) for the measurement; restore afterwards."""
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def corpus_texts(corpora: Path) -> dict[str, list[tuple[str, str]]]:
    """(text, subject) per corpus, prepared as `privbot eval` prepares them."""
    out: dict[str, list[tuple[str, str]]] = {}
    letters = corpora / "gdpr_request_letters"
    if (letters / "labels.csv").is_file():
        with (letters / "labels.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        out["gdpr letters"] = [
            (fill_letter((letters / r["file"]).read_text(encoding="utf-8")), "") for r in rows
        ]
    questions = corpora / "privacyqa_questions" / "questions.tsv"
    if questions.is_file():
        with questions.open(encoding="utf-8", newline="") as handle:
            out["privacyqa"] = [(r["question"], "") for r in csv.DictReader(handle, delimiter="\t")]
    spam = corpora / "spam_ham_spamassassin_testdata"
    if (spam / "labels.csv").is_file():
        parse, _ = _parser()
        with (spam / "labels.csv").open(encoding="utf-8", newline="") as handle:
            out["spamassassin"] = [
                parse((spam / r["file"]).read_bytes()) for r in csv.DictReader(handle)
            ]
    return out


def raw_mails(corpora: Path) -> list[bytes]:
    """Every raw mail file in the corpora (bounces, auto-replies, spam, ham, helpdesk MIME)."""
    patterns = {
        "spam_ham_spamassassin_testdata": "*/*",
        "bounces_autoreplies_sisimai": "*/*.eml",
        "bounces_autoreplies_bounceparser": "*.msg",
        "mime_zammad": "*.box",
    }
    found: list[bytes] = []
    for folder, pattern in patterns.items():
        found.extend(
            p.read_bytes() for p in sorted((corpora / folder).glob(pattern)) if p.is_file()
        )
    return found


def newsletter_reply(size: int = 50_000) -> bytes:
    """A person's one-line opt-out on top of a ~50 KB newsletter quoted in full."""
    paragraph = (
        "This week at JunoCloud: new storage tiers, faster sync for shared folders, a webinar "
        "on team spaces and our partners' offers. Read more on our blog and follow us. "
    )
    lines: list[str] = []
    while sum(len(x) + 3 for x in lines) < size:
        lines.append(paragraph[: 70 + len(lines) % 7])
        if len(lines) % 6 == 0:
            lines.append("")
    quoted = "\n".join(f"> {x}" if x else ">" for x in lines)
    body = (
        "Please unsubscribe me from this newsletter, I never asked for it.\n\nMaria\n\n"
        "On Mon, 3 Nov 2025 at 09:00, JunoCloud <news@junocloud.me> wrote:\n" + quoted + "\n"
    )
    return mail(sender="maria@example.org", subject="Re: JunoCloud weekly", body=body)


def _timed(fn: Callable[[T], object], items: Sequence[T], repeats: int, label: str) -> list[float]:
    times: list[float] = []
    with bar(len(items) * repeats, label) as pbar:
        for _ in range(repeats):
            for item in items:
                started = time.perf_counter()
                fn(item)
                times.append(time.perf_counter() - started)
                pbar.update(1)
    return times


def _figures(times: list[float]) -> dict[str, Any]:
    stats = summary(times)
    return {
        "messages": len(times),
        "msg_s": round(len(times) / sum(times), 1) if times else 0.0,
        "p50_ms": round(stats.get("p50", 0.0) * 1000, 3),
        "p99_ms": round(stats.get("p99", 0.0) * 1000, 3),
        "max_ms": round(stats.get("max", 0.0) * 1000, 3),
    }


def run(app: App, corpora: Path, repeats: int, long_repeats: int) -> dict[str, Any]:
    classify = app.classifier.classify
    result: dict[str, Any] = {"corpora": str(corpora)}
    with one_core() as cpu:
        result["cpu"] = cpu
        if corpora.is_dir():
            texts = corpus_texts(corpora)
            every: list[float] = []
            for name, items in texts.items():
                times = _timed(lambda x: classify(*x), items, repeats, f"classify: {name}")
                result[name] = _figures(times)
                every.extend(times)
            result["corpora_all"] = _figures(every)
            mails = raw_mails(corpora)
            result["examine_raw_mail"] = _figures(
                _timed(lambda raw: examine(app, raw), mails, repeats, "examine: raw mail corpora")
            )
        else:
            result["note"] = f"corpora not found at {corpora}: corpus figures skipped"
        letter = newsletter_reply()
        result["long_bytes"] = len(letter)
        result["long_examine"] = _figures(
            _timed(lambda raw: examine(app, raw), [letter], long_repeats, "examine: 50 KB reply")
        )
        # The worst case: the quoted newsletter reaching the classifier whole.
        text = letter.decode("utf-8", "replace").partition("\n\n")[2]
        result["long_classify_whole"] = _figures(
            _timed(lambda t: classify(t, ""), [text], long_repeats, "classify: 50 KB whole")
        )
    return result
