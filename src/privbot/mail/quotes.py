"""Split a message's text into what the sender wrote now, what they quoted, and a signature.

Knows quoted replies ("> " lines), attribution lines ("On ... wrote:") in several languages,
Outlook-style header blocks and forward separators, and signature / mobile-footer lines.
"""

from __future__ import annotations

import re

_ATTRIBUTION = re.compile(
    r"""^(?:
        on\b.{0,300}\bwrote\s*:?
      | am\b.{0,300}\bschrieb\b.{0,200}:
      | le\b.{0,300}\ba\s+[ée]crit\s*:
      | el\b.{0,300}\bescribi[óo]\s*:
      | il\b.{0,300}\bha\s+scritto\s*:
      | op\b.{0,300}\bschreef\b.{0,200}:
      | em\b.{0,300}\bescreveu\s*:
      | .{0,300}(?:@|\d).{0,300}\b(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]|ha\s+scritto
                               |schreef|escreveu)\s*:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_ATTRIBUTION_START = re.compile(r"^(?:on|am|le|el|il|op|em)\b", re.IGNORECASE)
# Separator words, in the 15 languages: a forward's ("---- Forwarded message ----", "Begin
# forwarded message:"), and an answered original's ("-----Original Message-----").
_FORWARD_WORDS = r"""forwarded\s+message|weitergeleitete\s+nachricht|message\s+transf[ée]r[ée]
    |mensaje\s+reenviado|messaggio\s+inoltrato|doorgestuurd\s+bericht
    |mensagem\s+encaminhada|vidarebefordrat\s+meddelande|videresendt\s+meddelelse
    |wiadomo[śs][ćc]\s+przekazana|przekazana\s+wiadomo[śs][ćc]|p[řr]eposlan[áa]\s+zpr[áa]va
    |mesaj\s+redirec[țţt]ionat|mesaj\s+transmis|προωθημένο\s+μήνυμα|προωθημενο\s+μηνυμα
    |tov[áa]bb[íi]tott\s+[üu]zenet|v[äa]litetty\s+viesti|edelleenl[äa]hetetty\s+viesti"""
_FORWARD_INTROS = r"""begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht
    |d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]"""
_ORIGINAL_WORDS = r"""original\s+message|original-nachricht|urspr[üu]ngliche\s+nachricht
    |message\s+d'origine|mensaje\s+original|messaggio\s+originale
    |oorspronkelijk\s+bericht|mensagem\s+original|original\s+e-?mail\s+message
    |ursprungligt\s+meddelande|oprindelig\s+meddelelse|wiadomo[śs][ćc]\s+oryginalna
    |p[ůu]vodn[íi]\s+zpr[áa]va|mesaj\s+original|αρχικό\s+μήνυμα|αρχικο\s+μηνυμα
    |eredeti\s+[üu]zenet|alkuper[äa]inen\s+viesti"""
_SEPARATOR = re.compile(
    rf"""^[\s*]*(?:
        -{{2,}}\s*(?:{_ORIGINAL_WORDS}|{_FORWARD_WORDS})\s*-{{2,}}
      | (?:{_FORWARD_INTROS})\s*:
    )[\s*]*$""",
    re.IGNORECASE | re.VERBOSE,
)
# The separators above that pass a mail on rather than answer it.
_FORWARD_SEPARATOR = re.compile(
    rf"^[\s*-]*(?:{_FORWARD_WORDS}|{_FORWARD_INTROS})", re.IGNORECASE | re.VERBOSE
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
# An Outlook-style header block's first line and the ones after it, in the 15 languages.
_HEADER_FROM = re.compile(
    r"^[\s*]*(?:from|de|von|van|da|fra|från|od|de\s+la|από|feladó|felado|lähettäjä|lahettaja)"
    r"\s*:[\s*]*\S",
    re.IGNORECASE,
)
_HEADER_NEXT = re.compile(
    r"^[\s*]*(?:sent|envoy[ée]|gesendet|enviad[oa]|inviato|verzonden|date|datum|fecha|data"
    r"|to|an|à|a|para|aan|cc|subject|betreff|objet|asunto|oggetto|onderwerp|assunto"
    r"|skickat|till|ämne|sendt|til|emne|wysłano|wyslano|do|temat|odesláno|odeslano|komu"
    r"|předmět|predmet|trimis|către|catre|subiect|στάλθηκε|σταλθηκε|προς|θέμα|θεμα"
    r"|elküldve|elkuldve|küldve|címzett|cimzett|tárgy|targy|dátum|lähetetty|lahetetty"
    r"|vastaanottaja|aihe|päivämäärä)\s*:",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(
    r"""^\s*(?:--\s*
      | sent\s+from\s+my\b.*
      | sent\s+from\s+(?:outlook|mail\s+for\s+windows|yahoo\s+mail)\b.*
      | get\s+outlook\s+for\s+\w+.*
      | von\s+meinem\s+.{0,40}\s+gesendet.*
      | gesendet\s+von\s+meinem\b.*
      | envoy[ée]\s+de\s+mon\b.*
      | enviado\s+desde\s+mi\b.*
      | enviado\s+do\s+meu\b.*
      | inviato\s+da(?:l)?\s+(?:mio\s+)?\w+.*
      | verstuurd\s+vanaf\s+mijn\b.*
    )$""",
    re.IGNORECASE | re.VERBOSE,
)


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution_span(lines: list[str], index: int) -> int:
    """Number of lines (1-3) forming an attribution starting at `index`, or 0."""
    first = lines[index].strip()
    if not first or _is_quote(first):
        return 0
    if _ATTRIBUTION.match(first):
        return 1
    if not _ATTRIBUTION_START.match(first):
        return 0
    joined = first
    for extra in (1, 2):  # clients wrap long attributions over two or three lines
        if index + extra >= len(lines) or not lines[index + extra].strip():
            return 0
        joined += " " + lines[index + extra].strip()
        if _ATTRIBUTION.match(joined):
            return extra + 1
    return 0


def _is_header_block(lines: list[str], index: int) -> bool:
    """An Outlook-style "From: / Sent:" block (optionally after a line of underscores)."""
    start = index
    if _UNDERSCORES.match(lines[index]):
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start < len(lines) and _HEADER_FROM.match(lines[start]):
            return True
    if start >= len(lines) or not _HEADER_FROM.match(lines[start]):
        return False
    following = [line for line in lines[start + 1 : start + 4] if line.strip()]
    return any(_HEADER_NEXT.match(line) for line in following[:2])


def _find_quote_start(lines: list[str]) -> tuple[int, int, bool] | None:
    """(index, span, is_attribution) of the first line that introduces quoted mail."""
    for index, line in enumerate(lines):
        if _is_quote(line):
            continue
        span = _attribution_span(lines, index)
        if span:
            return index, span, True
        if _SEPARATOR.match(line) or _is_header_block(lines, index):
            return index, 1, False
    return None


def _split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line):
            return lines[:index], lines[index:]
    return lines, []


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


def header_lines(text: str) -> int:
    """How many lines look like a mail's own header lines ("To:", "Asunto:", "Θέμα:")."""
    return sum(1 for line in text.split("\n") if _HEADER_NEXT.match(line))


def starts_forward(quoted: str) -> bool:
    """The quoted part opens with a forward's separator ("---- Forwarded message ----")."""
    for line in quoted.split("\n"):
        if line.strip():
            return bool(_FORWARD_SEPARATOR.match(line))
    return False


def split_reply(text: str) -> tuple[str, str, str]:
    """Split text into (new text, quoted text, signature).

    Top-posting puts everything from the first attribution/header block on in the quote;
    ">"-quoting keeps every unquoted line as new text, so interleaved answers survive.
    """
    lines = text.split("\n")
    found = _find_quote_start(lines)
    # An Outlook/forward header, or an attribution not followed by ">" lines, means top-posting:
    # everything from there on is the quote.
    if found is not None and (
        not found[2] or not any(_is_quote(x) for x in lines[found[0] + found[1] :])
    ):
        own, quoted = lines[: found[0]], lines[found[0] :]
    else:
        skip = set(range(found[0], found[0] + found[1])) if found else set()
        own = [x for i, x in enumerate(lines) if i not in skip and not _is_quote(x)]
        quoted = [x for i, x in enumerate(lines) if i in skip or _is_quote(x)]
    own, signature = _split_signature(own)
    new_text = _join(own)
    if not new_text.strip():
        # Never lose the person's words: if everything looks quoted, all of it is new.
        return text.strip("\n"), "", ""
    return new_text, _join(quoted), _join(signature)
