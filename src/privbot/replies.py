"""Reply texts: Jinja2 templates kept as data in replies/, checked when privbot starts."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

QUOTE_WIDTH = 72
SHORT_LINE = 50

# Every template the code renders; a missing or broken one stops start-up, naming the file.
# Each intent also needs intents/<name>.txt.j2: the part of the reply that answers it.
REQUIRED = (
    "answer.txt.j2", "layout.txt.j2", "_cite.txt.j2", "ask.txt.j2", "intents/review.txt.j2",
    "intents/unverified.txt.j2",
)  # fmt: skip


class RepliesError(ValueError):
    """A reply template is missing or broken; the message names the file."""


@dataclass(frozen=True)
class Replies:
    folder: Path
    env: jinja2.Environment

    def render(self, template: str, /, **context: Any) -> str:
        text = self.env.get_template(template).render(**context)
        return reflow(text)


def load_replies(folder: Path, intents: tuple[str, ...] = ()) -> Replies:
    if not folder.is_dir():
        raise RepliesError(f"{folder}: replies folder not found")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text mail, never HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["quote"] = quote
    env.filters["groupby_ordered"] = groupby_ordered
    for name in (*REQUIRED, *(f"intents/{i}.txt.j2" for i in intents)):
        path = folder / name
        if not path.is_file():
            raise RepliesError(f"{path}: required reply template is missing")
    for name in env.list_templates(extensions=["j2"]):
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RepliesError(f"{folder / name}:{exc.lineno}: {exc.message}") from None
    return Replies(folder, env)


def quote(text: str) -> str:
    """Text as an e-mail quotation: wrapped, each line starting with '> '."""
    words = " ".join(str(text).split())
    # Never break at hyphens: "plug-in" must stay the policy's word, not "plug- in".
    return "\n".join(f"> {line}" for line in wrap(words, QUOTE_WIDTH - 2))


@lru_cache(maxsize=4096)
def wrap(text: str, width: int) -> tuple[str, ...]:
    """`text` as lines of at most `width`; never broken at hyphens. Cached: the policy's
    clauses and the templates' fixed paragraphs are wrapped again for every reply."""
    return tuple(textwrap.wrap(text, width, break_on_hyphens=False) or [""])


def groupby_ordered(items: Any, attribute: str) -> list[tuple[Any, list[Any]]]:
    """Like Jinja's groupby, but groups keep the order they first appear in (no sorting)."""
    groups: dict[Any, list[Any]] = {}
    for item in items:
        groups.setdefault(getattr(item, attribute), []).append(item)
    return list(groups.items())


def reflow(text: str, width: int = 76) -> str:
    """Mail-ready text: prose paragraphs re-wrapped, quotes and lists kept, one final newline.

    Templates are written for reading, with variables of any length inside; the person
    reading the mail should see even lines whatever was filled in. A short line (a sign-off,
    a name) or one ending with ":" ends its paragraph, as in format=flowed.
    """
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.extend(wrap(" ".join(prose), width))
            prose.clear()

    for raw in text.strip("\n").splitlines():
        line = "-- " if raw == "-- " else raw.rstrip()  # keep the signature separator
        if not line or line.startswith((">", "- ", "--")):
            flush()
            out.append(line)
            continue
        prose.append(line.strip())
        if len(line) < SHORT_LINE or line.endswith(":"):
            flush()
    flush()
    while "" in out[:1]:
        out.pop(0)
    collapsed = [line for i, line in enumerate(out) if line or (i and out[i - 1])]
    return "\n".join(collapsed) + "\n"
