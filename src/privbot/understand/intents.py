"""Load and validate the intent data files in `intents/` (TOML, stdlib tomllib).

Each intent is one file `<name>.toml`; shared language data lives in `_languages.toml`
and mailbox-wide settings in `_common.toml`. Every problem raises `IntentsError` naming
the file and the key, so staff editing phrases get a precise message.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

REQUIRED_INTENTS = ("opt_out", "data_access", "correction", "deletion", "question", "other")
ANY_LANGUAGE = "any"  # phrases that work in every language (article numbers, "GDPR")
PHRASE_TABLES = ("phrases", "strong", "weak")
QUOTES = ("clauses", "sections")  # how a reply quotes the policy for an intent
_INTENT_KEYS = {
    "name", "request", "automatic", "quote", "description", "priority",
    "policy_sections", "cite_query", "ticket_type", "ticket_status",
}  # fmt: skip
_LANGUAGE_LISTS = (
    "stopwords",
    "negations",
    "question_openers",
    "request_openers",
    "conditionals",
    "footers",
)

PhraseSet = tuple[tuple[str, tuple[str, ...]], ...]  # ((language, phrases), ...)


class IntentsError(ValueError):
    """An intents data file is missing or malformed; the message names file and problem."""


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str
    stopwords: tuple[str, ...]
    negations: tuple[str, ...]
    question_openers: tuple[str, ...]
    request_openers: tuple[str, ...]
    conditionals: tuple[str, ...]
    footers: tuple[str, ...]


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    priority: int
    policy_sections: tuple[str, ...]
    cite_query: str
    phrases: PhraseSet  # normal weight
    strong: PhraseSet  # unambiguous on their own
    weak: PhraseSet  # hints that need company
    groups: tuple[tuple[str, tuple[tuple[str, PhraseSet], ...]], ...]  # e.g. scopes
    # The ticket staff get when this request needs them, and the status it starts in.
    ticket_type: str = "general"
    ticket_status: str = "open"
    # What privbot does with it (see the intent files): a request for something to be done,
    # completed by privbot alone when confident, quoting whole sections or best clauses.
    request: bool = False
    automatic: bool = False
    quote: str = "clauses"

    def group(self, name: str) -> tuple[tuple[str, PhraseSet], ...]:
        """Named sub-tables of a group, e.g. group("scopes") -> ((scope, phrases), ...)."""
        for key, value in self.groups:
            if key == name:
                return value
        return ()


@dataclass(frozen=True)
class Intents:
    intents: tuple[Intent, ...]
    languages: tuple[Language, ...]
    own_domains: tuple[str, ...]

    def get(self, name: str) -> Intent:
        for intent in self.intents:
            if intent.name == name:
                return intent
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.intents)

    @cached_property  # asked for every phrase hit: worked out once
    def requests(self) -> frozenset[str]:
        """Intents that ask for something to be done for the person (not a question)."""
        return frozenset(i.name for i in self.intents if i.request)


def load_intents(folder: Path) -> Intents:
    """Read every intent file in `folder`; raise IntentsError on the first problem."""
    if not folder.is_dir():
        raise IntentsError(f"{folder}: not a folder")
    languages = _load_languages(folder / "_languages.toml")
    known = {lang.code for lang in languages} | {ANY_LANGUAGE}
    common = _read(folder / "_common.toml")
    own_domains = _strings(common, "own_domains", _label(folder / "_common.toml"), required=False)
    intents = []
    for path in sorted(folder.glob("*.toml")):
        if path.name.startswith("_"):
            continue
        intents.append(_load_intent(path, known))
    names = {i.name for i in intents}
    missing = [n for n in REQUIRED_INTENTS if n not in names]
    if missing:
        raise IntentsError(f"{folder}: missing intent files: {', '.join(missing)}")
    return Intents(tuple(intents), languages, tuple(d.lower() for d in own_domains))


def _label(path: Path) -> str:
    """`intents/opt_out.toml`: short enough to read, precise enough to find."""
    return f"{path.parent.name}/{path.name}"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise IntentsError(f"{_label(path)}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise IntentsError(f"{_label(path)}: invalid TOML: {exc}") from None


def _strings(table: Mapping[str, Any], key: str, where: str, required: bool = True) -> list[str]:
    if key not in table:
        if required:
            raise IntentsError(f"{where}: {key}: missing")
        return []
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise IntentsError(f"{where}: {key}: must be a list of strings")
    return [v.strip() for v in value]


def _text(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise IntentsError(f"{where}: {key}: must be a non-empty string")
    return value.strip()


def _load_languages(path: Path) -> tuple[Language, ...]:
    where = _label(path)
    data = _read(path)
    if not data:
        raise IntentsError(f"{where}: no languages defined")
    languages = []
    for code, table in data.items():
        if not isinstance(table, dict):
            raise IntentsError(f"{where}: {code}: must be a table")
        if not code.isalpha() or code != code.lower():
            raise IntentsError(f"{where}: {code}: language code must be lower-case letters")
        at = f"{where}: {code}"
        unknown = set(table) - {"name", "script", *_LANGUAGE_LISTS}
        if unknown:
            raise IntentsError(f"{at}: unknown keys: {', '.join(sorted(unknown))}")
        lists = {key: tuple(_strings(table, key, at, required=False)) for key in _LANGUAGE_LISTS}
        languages.append(
            Language(
                code=code,
                name=_text(table, "name", at),
                script=_text(table, "script", at),
                **lists,
            )
        )
    return tuple(languages)


def _phrase_set(table: Any, where: str, known: set[str]) -> PhraseSet:
    if not isinstance(table, dict):
        raise IntentsError(f"{where}: must be a table of language = [phrases]")
    out = []
    for lang, phrases in table.items():
        if lang not in known:
            raise IntentsError(f"{where}.{lang}: unknown language (not in _languages.toml)")
        if not isinstance(phrases, list) or not all(
            isinstance(v, str) and v.strip() for v in phrases
        ):
            raise IntentsError(f"{where}.{lang}: must be a list of strings")
        out.append((lang, tuple(v.strip() for v in phrases)))
    return tuple(out)


def _load_intent(path: Path, known: set[str]) -> Intent:
    where = _label(path)
    data = _read(path)
    name = _text(data, "name", where)
    if name != path.stem:
        raise IntentsError(f"{where}: name: {name!r} does not match the file name")
    unknown = set(data) - _INTENT_KEYS - set(PHRASE_TABLES) - {"groups"}
    if unknown:
        raise IntentsError(f"{where}: unknown keys: {', '.join(sorted(unknown))}")
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise IntentsError(f"{where}: priority: must be an integer")
    tables = {}
    for key in PHRASE_TABLES:
        tables[key] = _phrase_set(data.get(key, {}), f"{where}: {key}", known)
        for lang, phrases in tables[key]:
            if not phrases:
                raise IntentsError(f"{where}: {key}.{lang}: must not be empty")
    if not any(tables.values()) and name != "other":
        raise IntentsError(f"{where}: phrases: at least one language needs phrases")
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise IntentsError(f"{where}: groups: must be a table")
    groups = []
    for group, members in groups_raw.items():
        if not isinstance(members, dict):
            raise IntentsError(f"{where}: groups.{group}: must be a table")
        groups.append(
            (
                group,
                tuple(
                    (member, _phrase_set(table, f"{where}: groups.{group}.{member}", known))
                    for member, table in members.items()
                ),
            )
        )
    return Intent(
        name=name,
        description=_text(data, "description", where, default=""),
        priority=priority,
        policy_sections=tuple(_strings(data, "policy_sections", where, required=False)),
        cite_query=_text(data, "cite_query", where, default=""),
        phrases=tables["phrases"],
        strong=tables["strong"],
        weak=tables["weak"],
        groups=tuple(groups),
        ticket_type=_text(data, "ticket_type", where, default=name),
        ticket_status=_text(data, "ticket_status", where, default="open"),
        request=_flag(data, "request", where),
        automatic=_flag(data, "automatic", where),
        quote=_choice(data, "quote", where, QUOTES),
    )


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise IntentsError(f"{where}: {key}: must be true or false")
    return value


def _choice(table: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise IntentsError(f"{where}: {key}: must be one of {', '.join(choices)}")
    return str(value)
