"""flow-engine-webpage: read web pages in flow-engine flows.

- ``WebPageStep`` (step type ``webpage_text``): fetch an ``http(s)://`` or ``file://`` page and
  return its title and readable text as a ``WebPage``.
- ``page_summary`` (``flow_engine_webpage.flows.PageSummaryFlow``): fetch a page, summarise it.

Installing the distribution is all it takes: flow-engine finds both through entry points.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .models import WebPage, WebPageError, WebPageInputs
from .step import WebPageStep

__all__ = ["WebPage", "WebPageError", "WebPageInputs", "WebPageStep", "__version__"]
