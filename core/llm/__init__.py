"""The LLM layer: every model call goes through litellm, imported only when a call is made."""

from .calls import LLMCall, complete, generate_image

__all__ = ["LLMCall", "complete", "generate_image"]
