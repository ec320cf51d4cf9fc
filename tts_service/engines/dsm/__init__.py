"""Kyutai DSM TTS through moshi: a batch of slots that requests join and leave."""

from .engine import DsmEngine

__all__ = ["DsmEngine"]
