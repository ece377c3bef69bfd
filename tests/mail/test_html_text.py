"""html_to_text: blocks become lines, blockquotes "> " lines, broken markup survives."""

from __future__ import annotations

from privbot.mail.html_text import html_to_text


def test_html_to_text_blocks_and_quotes() -> None:
    html = (
        "<div>Hi&nbsp;there,</div><p>first<br/>second</p><blockquote><p>quoted</p></blockquote>"
        "<table><tr><td>a</td><td>b</td></tr></table><p></p><p></p><p>end &lt;3</p>"
    )
    assert html_to_text(html) == "Hi there,\n\nfirst\nsecond\n\n> quoted\n\na b\n\nend <3"


def test_html_to_text_survives_unclosed_head() -> None:
    assert html_to_text("<html><head><title>t</title><body>visible</body>") == "visible"
