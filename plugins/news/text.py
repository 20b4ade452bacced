"""Plain text from feed HTML, and the text normalisation that matching and dedup share.

Feed summaries are HTML fragments (often entity-escaped twice); an LLM prompt and a query match want
plain words. The stdlib HTML parser is enough here and tolerates the broken markup feeds carry.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

_BLOCK_TAGS = {
    "p",
    "br",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "figure",
    "figcaption",
    "hr",
}
_SKIP_TAGS = {"script", "style", "template", "noscript"}
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self._skipping:
            self._skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(fragment: str | None, *, limit: int | None = None) -> str:
    """Visible text of an HTML fragment, whitespace collapsed, cut at ``limit`` characters with "…"."""
    if not fragment:
        return ""
    if "<" in fragment or "&" in fragment:
        parser = _TextExtractor()
        try:
            parser.feed(fragment)
            parser.close()
            text = "".join(parser.parts)
        except Exception:  # malformed markup: fall back to dropping anything tag-like
            text = re.sub(r"<[^>]*>", " ", fragment)
    else:
        text = fragment
    text = _SPACES.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
        text = cut.rstrip(" ,;:.") + "…"
    return text


def fold(text: str) -> str:
    """Case- and accent-insensitive form: ``Élysée`` and ``elysee`` fold the same."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalize_title(title: str) -> str:
    """Folded words only: punctuation, quotes and spacing differences do not make a new story."""
    return _SPACES.sub(" ", _NON_WORD.sub(" ", fold(title)).replace("_", " ")).strip()
