"""What the ``webpage_text`` step takes and returns, and its one error type.

Pure pydantic and stdlib, so the plugin module that flow-engine imports to list plugins stays cheap.
The URL check lives in one annotated type (``PageUrl``) that the step and the flow both use: a
``flow run`` with an ``ftp://`` URL is refused before any run is recorded, not halfway through one.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from flow_engine.plugin import FlowEngineError

SCHEMES = ("http", "https", "file")


def check_url(value: str) -> str:
    """Accept ``http(s)://host/...`` and ``file:`` URLs; say what is wrong with anything else."""
    value = value.strip()
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        got = f"a {scheme}: URL" if scheme and len(scheme) > 1 else "no scheme"
        raise ValueError(f"expected an http://, https:// or file:// URL, got {got} ({value!r})")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError(f"{value!r} has no host name")
    if scheme == "file" and not parts.path:
        raise ValueError(f"{value!r} has no path")
    return value


PageUrl = Annotated[str, AfterValidator(check_url)]


class WebPageInputs(BaseModel):
    """Inputs of ``WebPageStep``. Unknown keys are refused so a misspelt limit is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    url: PageUrl = Field(..., description="The page: an http://, https:// or file:// URL")
    max_chars: int = Field(default=20_000, ge=1, le=1_000_000, description="Cut the text at this length")
    timeout: float = Field(default=15.0, gt=0, le=300, description="Seconds the whole fetch may take")


class WebPage(BaseModel):
    """A page's readable text. ``final_url`` is where redirects ended; ``chars`` is ``len(text)``."""

    url: str
    final_url: str
    title: str
    text: str
    chars: int
    truncated: bool = False


class WebPageError(FlowEngineError):
    """The page could not be read. ``kind`` says why in one word, for code that wants to branch on it.

    Kinds: ``bad_url``, ``not_found``, ``http``, ``not_html``, ``too_large``, ``redirects``, ``timeout``,
    ``connection``, ``no_text``. A ``FlowEngineError``: the run is recorded as failed, ``flow run`` exits 1.
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind
