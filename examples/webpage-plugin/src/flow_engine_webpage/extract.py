"""Readable text from an HTML page: its title and main text, with paragraph breaks kept.

The stdlib ``html.parser`` is enough: it tolerates the broken markup real pages carry, needs no
compiled dependency, and the rules that matter are simple ones, applied while parsing:

- dropped with everything inside: code and embeds (``script``, ``style``, ``svg``, ``iframe``...),
  page chrome (``nav``, ``aside``, ``footer``, a page-level ``header``, the ARIA roles meaning the
  same), form controls, dialogs (cookie banners), and anything marked ``hidden`` or ``aria-hidden``;
- when the page marks its main content (``<main>``, ``<article>`` or ``role="main"``) only that is
  kept: authors mark it on purpose, and it is the best signal of where the text is. A ``header``
  inside it is the article's own (its headline, its byline) and is kept;
- block elements end a paragraph, ``<br>`` ends a line, list items get a ``- ``, table rows are one
  line with their cells separated by spaces, ``<pre>`` keeps its lines; everything else has its
  whitespace collapsed.

The result feeds an LLM prompt, so it favours clean prose over completeness.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from html.parser import HTMLParser

DROP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object", "embed",
     "video", "audio", "picture", "map", "nav", "aside", "footer", "button", "select", "textarea",
     "dialog", "datalist"}
)  # fmt: skip
DROP_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog"}
)
MAIN_TAGS = frozenset({"main", "article"})
BLOCK_TAGS = frozenset(
    {"address", "article", "blockquote", "body", "caption", "center", "dd", "details", "div", "dl", "dt",
     "fieldset", "figcaption", "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup",
     "legend", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead",
     "tr", "ul"}
)  # fmt: skip
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
     "wbr"}
)  # fmt: skip
CELL_TAGS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# WHATWG: these labels mean windows-1252 in HTML, which has printable characters where latin-1 has controls
_WINDOWS_1252 = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", "cp1252"}
TITLE_MAX = 300


@dataclass(frozen=True)
class Extracted:
    """A page's title (empty when it has none) and its readable text, paragraphs separated by a blank line."""

    title: str
    text: str


@dataclass
class _Scope:
    """An element being skipped, or the main content: its tag and the depth of same-tag nesting in it."""

    tag: str
    depth: int = 1


class _ReadableText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool]] = []  # (paragraph, inside the main content)
        self._current: list[str] = []
        self._prefix = ""
        self._skip: _Scope | None = None
        self._main: _Scope | None = None
        self._pre = 0
        self._title_parts: list[str] | None = None
        self.title = ""
        self.og_title = ""
        self._h1_parts: list[str] | None = None
        self.h1 = ""

    # -- elements ---------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS:
            self._void(tag, dict(attrs))
            return
        if self._skip is not None:
            if tag == self._skip.tag:
                self._skip.depth += 1
            return
        attributes = dict(attrs)
        if self._drops(tag, attributes):
            self._flush()
            self._skip = _Scope(tag)
            return
        if tag in BLOCK_TAGS:
            if self._title_parts is not None:  # an unclosed <title> must not swallow the page
                self._end_title()
            self._flush()
        if self._main is not None:
            if tag == self._main.tag:
                self._main.depth += 1
        elif tag in MAIN_TAGS or (attributes.get("role") or "").lower() == "main":
            self._main = _Scope(tag)
        if tag == "li":
            self._prefix = "- "
        elif tag == "pre":
            self._pre += 1
        elif tag in CELL_TAGS:
            self._current.append(" ")
        elif tag == "title" and not self.title and self._title_parts is None:
            self._title_parts = []
        elif tag == "h1" and not self.h1:
            self._h1_parts = []

    def handle_endtag(self, tag: str) -> None:
        if self._skip is not None:
            if tag == self._skip.tag:
                self._skip.depth -= 1
                if self._skip.depth == 0:
                    self._skip = None
            return
        if tag in BLOCK_TAGS:
            self._flush()
        if tag == "li":  # an empty item must not lend its marker to the next paragraph
            self._prefix = ""
        elif tag == "pre" and self._pre:
            self._pre -= 1
        elif tag == "title" and self._title_parts is not None:
            self._end_title()
        elif tag == "h1" and self._h1_parts is not None:
            self.h1 = clean_line("".join(self._h1_parts))
            self._h1_parts = None
        if self._main is not None and tag == self._main.tag:
            self._main.depth -= 1
            if self._main.depth == 0:
                self._main = None

    def _end_title(self) -> None:
        self.title = clean_line("".join(self._title_parts or []))
        self._title_parts = None

    def _void(self, tag: str, attributes: dict[str, str | None]) -> None:
        if self._skip is not None:
            return
        if tag == "br":
            self._current.append("\n")
        elif tag == "hr":
            self._flush()
        elif tag == "meta" and attributes.get("property") == "og:title" and not self.og_title:
            self.og_title = clean_line(attributes.get("content") or "")

    def _drops(self, tag: str, attributes: dict[str, str | None]) -> bool:
        if tag in DROP_TAGS:
            return True
        if tag == "header" and self._main is None:  # page chrome; inside an article it is the headline
            return True
        role = (attributes.get("role") or "").lower()
        if role in DROP_ROLES and not (role == "banner" and self._main is not None):
            return True
        if "hidden" in attributes or (attributes.get("aria-hidden") or "").lower() == "true":
            return True
        return bool(_HIDDEN_STYLE.search(attributes.get("style") or ""))

    # -- text -------------------------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self._skip is not None:
            return
        if self._title_parts is not None:
            self._title_parts.append(data)
            return
        if self._h1_parts is not None:
            self._h1_parts.append(data)
        self._current.append(data if self._pre else _SPACES.sub(" ", data))

    def _flush(self) -> None:
        raw = "".join(self._current)
        self._current = []
        if self._pre:
            lines = [line.rstrip() for line in raw.split("\n")]
            text = "\n".join(lines).strip("\n")
        else:
            lines = [clean_line(line) for line in raw.split("\n")]
            text = "\n".join(line for line in lines if line)
        if text.strip():  # an empty flush (<li><p>...) keeps the list marker for the text to come
            self.blocks.append((self._prefix + text, self._main is not None))
            self._prefix = ""

    def close(self) -> None:
        super().close()
        self._flush()


def clean_line(text: str) -> str:
    """Whitespace runs (newlines, tabs, non-breaking spaces) collapsed to one space, ends stripped."""
    return _SPACES.sub(" ", text).strip()


def extract_text(html: str) -> Extracted:
    """Title and readable text of ``html`` (see the module docstring for the rules)."""
    parser = _ReadableText()
    parser.feed(html)
    parser.close()
    main = [text for text, in_main in parser.blocks if in_main]
    title = parser.title or parser.og_title or parser.h1
    return Extracted(
        title=title[:TITLE_MAX], text=join_paragraphs(main or [text for text, _ in parser.blocks])
    )


def join_paragraphs(paragraphs: list[str]) -> str:
    """Paragraphs separated by a blank line; the items of one list by a line break only."""
    parts: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            in_list = paragraph.startswith("- ") and paragraphs[index - 1].startswith("- ")
            parts.append("\n" if in_list else "\n\n")
        parts.append(paragraph)
    return "".join(parts)


def decode_html(data: bytes, declared: str | None = None) -> str:
    """Bytes to text: a BOM wins, then the charset the headers declared, then a ``<meta charset>``,
    then UTF-8, then windows-1252 (what undeclared legacy pages almost always are)."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    match = _META_CHARSET.search(data[:4096])
    for label in (declared, match.group(1).decode("ascii") if match else None):
        encoding = _known_encoding(label)
        if encoding is not None:
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _known_encoding(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    if label in _WINDOWS_1252:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def truncate(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_chars``, at a paragraph, sentence or word end when one is near."""
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    floor = max_chars * 7 // 10  # do not throw away more than 30% to end on a nice boundary
    for separator, keep in (("\n\n", 0), (". ", 1), ("\n", 0), (" ", 0)):
        index = cut.rfind(separator, floor)
        if index > 0:
            cut = cut[: index + keep]
            break
    return cut.rstrip(), True
