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


def test_nbsp_spacer_lines_stay_blank_lines() -> None:
    html = (
        "<div>Hello,</div><div>&nbsp;</div><div>I want my data.</div><div>Jane&nbsp;&nbsp;Doe</div>"
    )
    assert html_to_text(html) == "Hello,\n\nI want my data.\nJane  Doe"


def test_table_cells_share_a_line_with_one_space() -> None:
    assert html_to_text("<table><tr>\n<td>From:</td>\n<td> X</td></tr></table>") == "From: X"


def test_borderless_blockquote_is_indentation_not_a_quote() -> None:
    indent = '<blockquote style="margin:0 0 0 40px;border:none;padding:0px">Delete it</blockquote>'
    outlook = '<blockquote style="border:none;border-left:solid #CCCCCC 1.0pt">Old</blockquote>'
    assert html_to_text(indent) == "Delete it"
    assert html_to_text(outlook) == "> Old"
    assert html_to_text('<blockquote type="cite" style="border:none">Old</blockquote>') == "> Old"


def test_client_quote_containers_are_quoted() -> None:
    gmail = (
        '<div dir="ltr">New</div><div class="gmail_quote"><div class="gmail_attr">'
        'pon., 27 maj 2024 Team napisał(a):</div><blockquote class="gmail_quote">Old</blockquote>'
        "</div><div>After</div>"
    )
    assert html_to_text(gmail) == "New\n> pon., 27 maj 2024 Team napisał(a):\n\n> > Old\n\nAfter"
    yahoo = '<div>New</div><div class="ydp1a2yahoo_quoted"><div>Il ... ha scritto:</div></div>'
    assert html_to_text(yahoo) == "New\n> Il ... ha scritto:"


def test_outlook_web_reply_marker_quotes_the_rest() -> None:
    html = (
        '<div>New</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>Od:</b> T'
        "<br><b>Wysłane:</b> pon</div><div>Old</div>"
    )
    assert html_to_text(html) == "New\n\n> Od: T\n> Wysłane: pon\n> Old"


def test_signature_separator_is_supplied_once() -> None:
    gmail = '<div>Delete it.</div><div class="gmail_signature">Jane<br>Acme</div>'
    assert html_to_text(gmail) == "Delete it.\n--\nJane\nAcme"
    prefixed = (
        '<div>Delete it.<br><span class="gmail_signature_prefix">-- </span><br>'
        '<div class="gmail_signature">Jane</div></div>'
    )
    assert html_to_text(prefixed) == "Delete it.\n--\nJane"
    thunderbird = '<p>Delete it.</p><div class="moz-signature">-- <br>Jane</div>'
    assert html_to_text(thunderbird) == "Delete it.\n\n--\nJane"
