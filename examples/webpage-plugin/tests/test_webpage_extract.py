"""Extraction quality: what a summarising LLM gets to read from a page, and what it is spared."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_engine_webpage.extract import decode_html, extract_text, truncate

PAGES = Path(__file__).parent / "pages"


def page(name: str) -> str:
    return decode_html((PAGES / name).read_bytes())


def test_article_keeps_title_and_main_text_as_paragraphs() -> None:
    result = extract_text(page("article.html"))

    assert result.title == "Tidal Energy Comes of Age | Coastal Gazette"
    paragraphs = result.text.split("\n\n")
    assert paragraphs[:3] == [
        "Tidal Energy Comes of Age",  # the article's own <header> is kept: it holds the headline
        "By Mara Quinn · 12 March 2025",
        "The turbines off Pentland Point have now run for three full winters, and the operators say "
        "the results “exceed every forecast”.",
    ]
    assert (
        "Output reached 42 GWh last year, enough for roughly 11,000 homes & two fish-processing plants."
        in paragraphs
    )
    assert "What changed" in paragraphs
    assert paragraphs[-1] == "A second array is planned for 2027."


def test_article_drops_the_page_chrome_outside_the_main_content() -> None:
    text = extract_text(page("article.html")).text

    for chrome in ("Coastal Gazette", "News", "Sport", "Related stories", "Wind farm", "All rights reserved"):
        assert chrome not in text


def test_lists_quotes_and_line_breaks_keep_their_shape() -> None:
    text = extract_text(page("article.html")).text

    assert (
        "- blades made of a flexible composite,\n- a cheaper subsea cable,\n"
        "- and maintenance scheduled by tide tables." in text
    )
    assert "“The sea is predictable,” said chief engineer Ola Brandt.\n“That is the whole point.”" in text


def test_whitespace_is_collapsed_and_no_markup_survives() -> None:
    text = extract_text(page("article.html")).text

    assert "<" not in text and "&nbsp;" not in text and "\xa0" not in text
    assert "  " not in text  # runs of spaces and source newlines become one space
    assert "\n\n\n" not in text
    assert text == text.strip()


def test_noisy_page_keeps_only_the_prose() -> None:
    result = extract_text(page("noisy.html"))

    assert result.title == "Sourdough at Altitude"
    assert result.text.split("\n\n") == [
        "Sourdough at Altitude",
        "Above 1,500 metres water boils sooner and dough rises faster, so a starter that behaves at sea "
        "level turns sour and slack in the mountains.",
        "Use 10% less yeast-leaven, add a spoonful more water, and shorten the bulk ferment by a third.",
        "Bake at 230°C for the first twenty minutes with steam.",
    ]


@pytest.mark.parametrize(
    "noise",
    [
        "Tracking pixel",  # <script>
        "font-family",  # <style>
        "Structured data",  # JSON-LD
        "Injected advertisement",  # markup written by a script
        "cookies",  # role="dialog" banner
        "Accept all",  # <button>
        "Bakery Blog",  # role="banner"
        "Recipes",  # role="navigation"
        "enable JavaScript",  # <noscript>
        "newsletter",  # hidden
        "Decorative",  # aria-hidden
        "Invisible",  # style="display:none"
        "Share icon",  # <svg><title>
        "Search recipes",  # role="search" form
        "Iframe fallback",  # <iframe>
        "Popular posts",  # role="complementary"
        "Powered by",  # role="contentinfo"
        "Template comment",  # <template>
    ],
)
def test_noisy_page_drops(noise: str) -> None:
    assert noise not in extract_text(page("noisy.html")).text


def test_title_falls_back_to_og_title_then_h1() -> None:
    og = '<html><head><meta property="og:title" content=" Shared  title "></head><body><h1>Head</h1></body>'
    assert extract_text(og).title == "Shared title"
    assert extract_text("<body><h1>The <em>big</em> one</h1><p>x</p></body>").title == "The big one"
    assert extract_text("<p>no title at all</p>").title == ""


def test_an_svg_title_is_not_the_page_title() -> None:
    html = "<html><body><svg><title>icon</title></svg><h1>Real heading</h1></body></html>"
    assert extract_text(html).title == "Real heading"


def test_a_page_header_is_chrome_but_an_articles_header_is_its_headline() -> None:
    page_level = "<body><header><p>Site name</p></header><p>Body text</p></body>"
    assert extract_text(page_level).text == "Body text"
    in_article = "<body><article><header><h2>Headline</h2></header><p>Body text</p></article></body>"
    assert extract_text(in_article).text == "Headline\n\nBody text"


def test_role_main_marks_the_main_content_too() -> None:
    html = (
        "<body><div class='top'>Menu text</div>"
        "<div role='main'><div><p>Inside one</p></div><p>Inside two</p></div>"
        "<div>After the main content</div></body>"
    )
    assert extract_text(html).text == "Inside one\n\nInside two"


def test_without_marked_main_content_the_whole_body_is_read() -> None:
    html = "<body><div>First block</div><section><p>Second</p><p>Third</p></section></body>"
    assert extract_text(html).text == "First block\n\nSecond\n\nThird"


def test_pre_keeps_its_lines_and_tables_read_row_by_row() -> None:
    html = (
        "<article><pre>def f(x):\n    return x  * 2\n</pre>"
        "<table><tr><th>City</th><th>Pop</th></tr><tr><td>Oslo</td><td>709k</td></tr></table></article>"
    )
    assert extract_text(html).text == "def f(x):\n    return x  * 2\n\nCity Pop\n\nOslo 709k"


def test_broken_markup_does_not_lose_the_text() -> None:
    html = "<html><body><p>One<p>Two <b>bold<i>both</b> after</i><div>Three</span></body>"
    assert extract_text(html).text == "One\n\nTwo boldboth after\n\nThree"


def test_an_unclosed_title_does_not_swallow_the_page() -> None:
    result = extract_text("<html><head><title>Broken title</head><body><p>Body text</p></body>")
    assert result.title == "Broken title"
    assert result.text == "Body text"


def test_an_unclosed_dropped_element_only_hides_what_follows_it() -> None:
    html = "<body><p>Kept</p><nav><a>Menu"
    assert extract_text(html).text == "Kept"


def test_decoding_follows_meta_charset_and_legacy_encodings() -> None:
    result = extract_text(decode_html((PAGES / "latin1.html").read_bytes()))

    assert result.title == "Café crème"
    assert result.text == "Naïve résumé – “quoted” for £5."  # windows-1252 dashes and quotes


def test_decoding_prefers_the_declared_charset_and_a_bom() -> None:
    assert decode_html("<p>é</p>".encode("utf-16-le"), "utf-16-le") == "<p>é</p>"
    assert decode_html(b"\xef\xbb\xbf<p>\xc3\xa9</p>", "latin-1") == "<p>é</p>"  # the BOM wins
    assert decode_html(b"<p>\xe9</p>") == "<p>é</p>"  # not UTF-8: windows-1252
    assert decode_html(b"<p>\xe9</p>", "no-such-charset") == "<p>é</p>"


def test_truncate_cuts_at_a_paragraph_or_sentence_end() -> None:
    text = "First paragraph is here.\n\nSecond paragraph. It goes on for a while longer than that."

    assert truncate(text, 500) == (text, False)
    assert truncate(text, 30) == ("First paragraph is here.", True)
    cut, truncated = truncate(text, 60)
    assert truncated and cut == "First paragraph is here.\n\nSecond paragraph."
    # a boundary that would throw away more than 30% of the allowance is not worth it: end on a word
    cut, truncated = truncate(text, 70)
    assert truncated and cut == "First paragraph is here.\n\nSecond paragraph. It goes on for a while"
    cut, truncated = truncate("word " * 50, 42)
    assert truncated and len(cut) <= 42 and cut.endswith("word")
