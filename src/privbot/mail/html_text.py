"""Convert HTML mail to readable plain text (blocks become lines, blockquotes "> " lines)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from privbot.mail.decode import clean_text

_WHITESPACE = re.compile(r"\s+")
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


class _HtmlToText(HTMLParser):
    """Readable text from HTML: blocks become lines, blockquotes become "> " lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip: list[str] = []
        self._pre = 0
        self._quote = 0

    def _end_line(self) -> None:
        line = "".join(self._current).rstrip()
        self._current = []
        self.lines.append(("> " * self._quote) + line if line else ("> " * self._quote).rstrip())

    def _block(self, blank: bool) -> None:
        if self._current and "".join(self._current).strip():
            self._end_line()
        else:
            self._current = []
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = []  # a <head> that was never closed ends here
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
        elif tag == "br":
            self._end_line()
        elif tag == "blockquote":
            self._block(blank=True)
            self._quote += 1
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            self._pre += tag == "pre"
            if tag == "li":
                self._current.append("- ")
        elif tag in _CELL_TAGS and self._current:
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
        elif tag == "blockquote":
            self._block(blank=True)
            self._quote = max(0, self._quote - 1)
        elif tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
            self._block(blank=tag in _PARAGRAPH_TAGS)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._current.append(first)
            for line in rest:
                self._end_line()
                self._current.append(line)
            return
        text = _WHITESPACE.sub(" ", data)
        if not "".join(self._current).strip():
            text = text.lstrip()
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
        import html as html_module

        text = html_module.unescape(_TAG.sub(" ", html))
    text = text.replace("\xa0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")
