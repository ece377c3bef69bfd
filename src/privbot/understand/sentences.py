"""A mail's text as sentences: subject first, soft-wrapped lines rejoined, list marks kept
with their item; URLs and addresses replaced by tokens; the addresses a mail names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from privbot.mail.compose import is_reply, strip_prefixes
from privbot.understand.language import normalise, tokenise

URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LIST_MARK = re.compile(r"(?:\d{1,3}|[a-z])[.)]")
_SENTENCE_END = re.compile(r"(?<=[!?。！？])\s*|(?<=[.;])\s+(?=[^\d\s(])")


@dataclass(frozen=True)
class Sentence:
    text: str  # original words, for quoting
    tokens: tuple[str, ...]
    norm: str
    is_subject: bool = False
    # The subject of a reply above new words of the sender's: context, as a quote is ("Re:
    # Delete my account" over "Thank you, all fine now" asks for nothing).
    thread: bool = False


def split_sentences(new_text: str, subject: str) -> list[Sentence]:
    """Subject first, then the body split into sentences (soft-wrapped lines rejoined)."""
    out: list[Sentence] = []
    # A reply's subject is the thread's (an earlier mail's words, often the request we
    # answered); a forward's is the forwarded mail's, which the sender sends again on purpose.
    reply = is_reply(subject or "")
    subject = strip_prefixes(subject or "")
    if subject:
        out.append(make_sentence(subject, is_subject=True))
    for chunk in _lines_to_chunks(new_text or ""):
        pending = ""
        for piece in _SENTENCE_END.split(chunk):
            piece = piece.strip()
            if _LIST_MARK.fullmatch(piece):
                pending = f"{pending}{piece} "  # "6." belongs to the item that follows
            elif piece:
                out.append(make_sentence(pending + piece))
                pending = ""
    if reply and len(out) > 1 and out[0].is_subject:
        out[0] = replace(out[0], thread=True)
    return out


def _lines_to_chunks(text: str) -> list[str]:
    """Rejoin lines that a mail client wrapped; keep real line breaks as sentence breaks."""
    chunks: list[str] = []
    current = ""
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            if current:
                chunks.append(current)
            current = ""
            continue
        wrapped = (
            current
            and len(current.rsplit("\n", 1)[-1]) >= 60
            and current[-1] not in ".!?:;"
            and line[:1].islower()
        )
        if wrapped:
            current = f"{current} {line}"
        else:
            if current:
                chunks.append(current)
            current = line
    if current:
        chunks.append(current)
    return chunks


def make_sentence(text: str, is_subject: bool = False) -> Sentence:
    prepared = EMAIL.sub(" emailtoken ", URL.sub(" urltoken ", text))
    norm = normalise(prepared)
    return Sentence(text, tuple(tokenise(norm)), norm, is_subject)


def starts_with(tokens: Sequence[str], seq: tuple[str, ...]) -> bool:
    return tuple(tokens[: len(seq)]) == seq


def contains(tokens: Sequence[str], seq: tuple[str, ...]) -> bool:
    n = len(seq)
    return any(tuple(tokens[i : i + n]) == seq for i in range(len(tokens) - n + 1))


def named_addresses(text: str, own_domains: Iterable[str]) -> tuple[str, ...]:
    """The e-mail addresses a mail names, our own domains left out."""
    own = tuple(own_domains)
    found = []
    for address in EMAIL.findall(text):
        address = address.strip(".").lower()
        domain = address.rsplit("@", 1)[-1]
        if any(domain == d or domain.endswith("." + d) for d in own):
            continue
        found.append(address)
    return tuple(dict.fromkeys(found))
