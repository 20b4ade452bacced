"""The ``webpage_text`` step type: fetch a page, return its title and readable text.

Use it directly (``await WebPageStep().execute({"url": ...})``) or subclass it to change its limits;
``result.output_content`` is a ``WebPage``. The limits that protect the process (bytes, redirects) are
class attributes, not inputs: whoever deploys a flow sets them, whoever runs it cannot raise them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flow_engine.plugin import BaseStep, StepOutput

from . import __version__
from .extract import decode_html, extract_text, truncate
from .fetch import FetchLimits, fetch_page
from .models import WebPage, WebPageError, WebPageInputs

STEP_TYPE = "webpage_text"


class WebPageStep(BaseStep):
    """Fetches ``url`` (http, https or file) and extracts its title and main text.

    Limits: ``timeout`` (input) bounds the whole fetch; ``max_bytes`` the body, ``max_redirects`` the
    redirect chain. Non-HTML content, HTTP errors, and a page without readable text (a JavaScript-only
    app, say) fail the step with a ``WebPageError`` rather than handing an empty text to an LLM step.
    ``result.metadata`` adds ``final_url``, ``http_status``, ``bytes`` and ``truncated``.
    """

    step_type = STEP_TYPE
    step_name = "fetch_page"
    Inputs = WebPageInputs

    max_bytes: ClassVar[int] = 5_000_000
    max_redirects: ClassVar[int] = 5
    user_agent: ClassVar[str] = f"flow-engine-webpage/{__version__}"
    #: read HTTP(S)_PROXY and .netrc from the environment (off: nothing is picked up behind your back)
    trust_env: ClassVar[bool] = False
    #: file:// URLs read local files; switch off where the URL comes from someone you do not trust
    allow_file_urls: ClassVar[bool] = True
    #: fail when the page has no readable text, instead of returning an empty ``text``
    require_text: ClassVar[bool] = True

    async def run(self, inputs: WebPageInputs) -> StepOutput:
        limits = FetchLimits(
            timeout=inputs.timeout,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            user_agent=self.user_agent,
            trust_env=self.trust_env,
            allow_file_urls=self.allow_file_urls,
        )
        fetched = await fetch_page(inputs.url, limits)
        extracted = extract_text(decode_html(fetched.data, fetched.charset))
        if self.require_text and not extracted.text:
            raise WebPageError(
                f"{fetched.final_url} has no readable text (is it built by JavaScript in the browser?)",
                kind="no_text",
            )
        text, truncated = truncate(extracted.text, inputs.max_chars)
        page = WebPage(
            url=inputs.url,
            final_url=fetched.final_url,
            title=extracted.title,
            text=text,
            chars=len(text),
            truncated=truncated,
        )
        extra = {
            "final_url": fetched.final_url,
            "http_status": fetched.status,
            "bytes": len(fetched.data),
            "truncated": truncated,
        }
        return StepOutput(content=page, extra=extra)

    @classmethod
    def restore_output(cls, stored: Any) -> WebPage:
        """On resume the stored JSON becomes a ``WebPage`` again, as the live step returned."""
        return WebPage.model_validate(stored)
