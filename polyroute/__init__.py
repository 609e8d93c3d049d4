"""polyroute: one OpenAI-compatible endpoint in front of a fleet of models."""

__version__ = "0.1.0"
