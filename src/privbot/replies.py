"""Reply texts: Jinja2 templates kept as data in replies/<language>/, checked at start-up.

Every language has its own folder with the same templates, written natively (the policy is
quoted in English in all of them: it exists only in English). English (`replies/en/`) is
the reference: a language folder that lacks one of its templates stops start-up, naming
the file. Mail in a language without a folder is answered in English.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date

QUOTE_WIDTH = 72
SHORT_LINE = 50
REFERENCE = "en"  # the language every other folder must match, and the fallback

# Every template the code renders; a missing or broken one stops start-up, naming the file.
# Each intent also needs intents/<name>.txt.j2: the part of the reply that answers it.
REQUIRED = (
    "answer.txt.j2", "layout.txt.j2", "_cite.txt.j2", "_words.txt.j2", "ask.txt.j2",
    "intents/review.txt.j2", "intents/unverified.txt.j2", "intents/evidence_received.txt.j2",
    "chat/confirm.txt.j2", "chat/says.txt.j2", "staff/_layout.txt.j2",
    "staff/extension.txt.j2",
)  # fmt: skip


class RepliesError(ValueError):
    """A reply template is missing or broken; the message names the file."""


@dataclass(frozen=True)
class Replies:
    folder: Path
    envs: Mapping[str, jinja2.Environment]  # language code -> its templates

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.envs)

    def language(self, code: str | None) -> str:
        """The language a reply to `code` is written in: its own, else English."""
        return code if code in self.envs else REFERENCE

    def render(self, template: str, /, language: str | None = None, **context: Any) -> str:
        """A mail text: the template in `language`, with its paragraphs re-flowed."""
        env = self.envs[self.language(language)]
        return reflow(env.get_template(template).render(**context))

    def says(self, template: str, language: str | None, macro: str, /, **context: Any) -> str:
        """One sentence of a template of short texts (`chat/says.txt.j2`), by macro name."""
        env = self.envs[self.language(language)]
        module = env.get_template(template).make_module()
        return " ".join(str(getattr(module, macro)(**context)).split())

    def names(self, folder: str) -> list[str]:
        """The templates in a subfolder (staff/), without `.txt.j2`; `_` ones are parts."""
        return sorted(
            p.name.removesuffix(".txt.j2")
            for p in (self.folder / REFERENCE / folder).glob("*.txt.j2")
            if not p.name.startswith("_")
        )


def load_replies(folder: Path, intents: tuple[str, ...] = ()) -> Replies:
    if not folder.is_dir():
        raise RepliesError(f"{folder}: replies folder not found")
    reference = folder / REFERENCE
    for name in (*REQUIRED, *(f"intents/{i}.txt.j2" for i in intents)):
        if not (reference / name).is_file():
            raise RepliesError(f"{reference / name}: required reply template is missing")
    wanted = sorted(str(p.relative_to(reference)) for p in reference.rglob("*.txt.j2"))
    envs: dict[str, jinja2.Environment] = {}
    codes = [REFERENCE, *sorted(p.name for p in folder.iterdir() if _is_language(p))]
    for code in dict.fromkeys(codes):
        here = folder / code
        missing = [name for name in wanted if not (here / name).is_file()]
        if missing:
            raise RepliesError(
                f"{here / missing[0]}: reply template missing for language {code!r} "
                f"({len(missing)} missing in all; {REFERENCE}/ has them)"
            )
        envs[code] = _environment(here, code)
        for name in envs[code].list_templates(extensions=["j2"]):
            try:
                envs[code].get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise RepliesError(f"{here / name}:{exc.lineno}: {exc.message}") from None
    return Replies(folder, envs)


def _is_language(path: Path) -> bool:
    if not path.is_dir() or path.name.startswith((".", "_")):
        return False
    try:
        Locale.parse(path.name)
    except (ValueError, UnknownLocaleError):
        raise RepliesError(f"{path}: not a language code (replies/<code>/, e.g. de)") from None
    return True


def _environment(folder: Path, code: str) -> jinja2.Environment:
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
    env.filters["date"] = partial(long_date, locale=code)
    env.globals["language"] = code
    return env


def language_name(code: str) -> str:
    """How staff see a language: "de: German (Deutsch)"."""
    try:
        locale = Locale.parse(code)
    except (ValueError, UnknownLocaleError):
        return code
    english, own = locale.get_display_name("en"), locale.get_display_name(code)
    return f"{code}: {english}" + (f" ({own})" if own and own != english else "")


def long_date(moment: date | datetime | None, locale: str) -> str:
    """A date as the language writes it in a letter ("2. Januar 2027", "2 janvier 2027")."""
    if moment is None:
        return ""
    day = moment.date() if isinstance(moment, datetime) else moment
    # No-break spaces: a date is never split across lines ("2." / "Januar 2027").
    return format_date(day, format="long", locale=locale).replace(" ", "\u00a0")


def quote(text: str) -> str:
    """Text as an e-mail quotation: wrapped, each line starting with '> '."""
    words = " ".join(str(text).split())
    # Never break at hyphens: "plug-in" must stay the policy's word, not "plug- in".
    return "\n".join(f"> {line}" for line in wrap(words, QUOTE_WIDTH - 2))


@lru_cache(maxsize=4096)
def wrap(text: str, width: int) -> tuple[str, ...]:
    """`text` as lines of at most `width`; never broken at hyphens, and a word longer than
    a line (a link) stays whole. Cached: the policy's clauses and the templates' fixed
    paragraphs are wrapped again for every reply."""
    wrapped = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)
    return tuple(wrapped or [""])


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
