"""The LLM layer: every model call goes through litellm, imported only when a call is made.

- ``complete`` / ``generate_image``: one call = attempts with retries of transient failures, each
  attempt recorded in ``llm_requests`` (``calls.py``);
- ``flow_engine.llm.structured.complete_structured``: JSON for a pydantic model, validated, re-asked;
- ``retry_policy.py``: which failures are retried, and after how long (pure functions);
- ``hook.py``: the ``wrap_llm_call`` hook around each attempt (cassettes, scripted answers, tracing);
- ``flow_engine.llm.loader.load_litellm``: litellm without network access at import and without banners.
"""

from .calls import LLMCall, LLMRequestError, complete, generate_image

__all__ = ["LLMCall", "LLMRequestError", "complete", "generate_image"]
