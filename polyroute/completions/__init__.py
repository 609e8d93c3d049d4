"""OpenAI's legacy text completions (``POST /v1/completions``) over the fleet: types, plan, walk, front."""

from polyroute.completions.types import CompletionRequest, TextCall, TextChunk, TextCompletion

__all__ = ["CompletionRequest", "TextCall", "TextChunk", "TextCompletion"]
