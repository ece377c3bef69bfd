"""Convert HTML mail to readable plain text (blocks become lines, quoted mail "> " lines).

Quoted mail is marked the way `quotes.split_reply` reads it: a quoting <blockquote>, and the
containers mail clients put quoted history in without one (Gmail, Outlook on the web, Yahoo,
Thunderbird), become "> " lines, whatever language the client wrote its attribution in.
"""

from __future__ import annotations

import html as html_module
import re
from html.parser import HTMLParser

from privbot.mail.decode import clean_text

_ASCII_SPACE = " \t\n\r\f"
# HTML collapses ASCII whitespace only: &nbsp; is text, so a spacer line (<div>&nbsp;</div>,
# Outlook's and Apple Mail's empty line) stays a line.
_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "pre", "hr"}
)
_LINE_TAGS = frozenset(
    {
        "div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address",
        "center", "form", "fieldset", "figure", "figcaption", "main", "nav", "aside", "caption",
        "tbody", "thead", "tfoot", "body", "html",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)  # fmt: skip
# Elements (other than <blockquote>) that clients wrap quoted mail in, with its attribution:
# Gmail's div.gmail_quote, Thunderbird's attribution and forward, Yahoo's "ydp…yahoo_quoted".
_QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "moz-forward-container"})
_QUOTE_CLASS_SUFFIX = "yahoo_quoted"
# Outlook on the web, new Outlook and Outlook mobile mark where the quoted mail begins; the
# quoted message follows as siblings, so everything from there to the end is quoted. OWA
# prefixes the ids of a message it quotes with "x_".
_QUOTE_REST_IDS = frozenset({"appendonsend", "divrplyfwdmsg"})
# Signature blocks. Gmail writes "-- " before the signature in its text/plain alternative but not
# always in the HTML; Thunderbird writes it in both. A missing separator is supplied.
_SIGNATURE_CLASSES = frozenset({"gmail_signature", "moz-signature"})
_VISIBLE_BORDER = re.compile(r"\b(?:solid|dashed|dotted|double|groove|ridge|inset|outset)\b")


def _attr_map(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
    return {name.lower(): (value or "") for name, value in attrs}


def _blockquote_quotes(attrs: dict[str, str]) -> bool:
    """Whether a <blockquote> is quoted mail rather than indentation.

    Gmail, Thunderbird and Apple Mail indent with a borderless blockquote ("margin: 0 0 0 40px;
    border: none"); their quotes carry type="cite", a quote class or a left border (Outlook:
    "border:none;border-left:solid"). Without a border declaration it counts as a quote.
    """
    if attrs.get("type", "").lower() == "cite" or "quote" in attrs.get("class", "").lower():
        return True
    visible: bool | None = None
    for declaration in attrs.get("style", "").lower().split(";"):
        name, _, value = declaration.partition(":")
        if name.strip() in ("border", "border-left", "border-left-style"):
            visible = bool(_VISIBLE_BORDER.search(value))
    return visible is not False


def _classes(attrs: dict[str, str]) -> set[str]:
    return set(attrs.get("class", "").lower().split())


class _HtmlToText(HTMLParser):
    """Readable text from HTML: blocks become lines, quoted mail becomes "> " lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip: list[str] = []
        self._pre = 0
        self._blockquotes: list[bool] = []  # per open <blockquote>: does it quote?
        self._open: dict[str, int] = {}  # open elements per tag name, to find a container's end
        self._containers: list[tuple[str, int]] = []  # open quote containers: (tag, depth)
        self._quote_rest = False
        self._signature_pending = False

    def _depth(self) -> int:
        return sum(self._blockquotes) + len(self._containers) + self._quote_rest

    def _has_text(self) -> bool:
        return bool("".join(self._current).strip(_ASCII_SPACE))

    def _end_line(self) -> None:
        line = "".join(self._current).rstrip()
        self._current = []
        prefix = "> " * self._depth()
        self.lines.append(prefix + line if line else prefix.rstrip())

    def _block(self, blank: bool) -> None:
        if self._has_text():
            self._end_line()
        else:
            self._current = []
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = []  # a <head> that was never closed ends here
        if tag not in _VOID_TAGS:
            self._open[tag] = self._open.get(tag, 0) + 1
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
            return
        attr = _attr_map(attrs)
        if tag == "br":
            self._end_line()
        elif tag == "blockquote":
            self._block(blank=True)
            self._blockquotes.append(_blockquote_quotes(attr))
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            self._pre += tag == "pre"
            if tag == "li":
                self._current.append("- ")
        elif tag in _CELL_TAGS and self._has_text() and not "".join(self._current).endswith(" "):
            self._current.append(" ")  # cells of a row share its line
        self._mark_mail_structure(tag, attr)

    def _mark_mail_structure(self, tag: str, attr: dict[str, str]) -> None:
        classes = _classes(attr)
        if tag != "blockquote" and (
            classes & _QUOTE_CLASSES or any(c.endswith(_QUOTE_CLASS_SUFFIX) for c in classes)
        ):
            self._block(blank=False)
            self._containers.append((tag, self._open.get(tag, 0)))
        if attr.get("id", "").lower().removeprefix("x_") in _QUOTE_REST_IDS:
            self._block(blank=False)
            self._quote_rest = True
        if classes & _SIGNATURE_CLASSES:
            self._block(blank=False)
            last = next((line for line in reversed(self.lines) if line.strip()), "")
            self._signature_pending = last.lstrip("> ").strip() != "--"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:  # <div/> opens nothing
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
        elif tag == "blockquote":
            self._block(blank=True)
            if self._blockquotes:
                self._blockquotes.pop()
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        depth = self._open.get(tag, 0)
        if depth:
            self._open[tag] = depth - 1
        while self._containers and self._containers[-1][0] == tag:
            if self._containers[-1][1] < depth:
                break
            self._block(blank=False)
            self._containers.pop()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._signature_pending and data.strip():
            self._signature_pending = False
            if not data.strip().startswith("--"):
                self._block(blank=False)
                self._current.append("-- ")
                self._end_line()
        if self._pre:
            first, *rest = data.split("\n")
            self._current.append(first)
            for line in rest:
                self._end_line()
                self._current.append(line)
            return
        text = _WHITESPACE.sub(" ", data)
        joined = "".join(self._current)
        if not joined.strip(_ASCII_SPACE) or joined.endswith(" "):
            text = text.lstrip(_ASCII_SPACE)  # one space between words across elements
        if text:
            self._current.append(text)

    def text(self) -> str:
        self._block(blank=False)
        return "\n".join(self.lines)


_TAG = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """Convert HTML mail to readable plain text with `\\n` line endings."""
    parser = _HtmlToText()
    try:
        parser.feed(clean_text(html))
        parser.close()
        text = parser.text()
    except Exception:  # HTMLParser can trip on pathological markup; strip tags instead
        text = html_module.unescape(_TAG.sub(" ", html))
    text = text.replace("\xa0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")
