"""Pocket TTS through pocket-tts: the engine, the package's internals it uses (listed and checked
at load), the batched frame loop, the decode pipeline and the word alignment read from its attention."""

from .engine import PACKAGE_LANGUAGES, PocketEngine

__all__ = ["PACKAGE_LANGUAGES", "PocketEngine"]
