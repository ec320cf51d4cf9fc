"""A speech request: what a client asked for, in the core's words."""

from __future__ import annotations

from dataclasses import dataclass, field

from .voices import STRICT


@dataclass
class SpeechRequest:
    """What a client asked for, in the core's words; every surface fills one in."""

    text: str | None = None  # a whole text, checked by `start`
    streamed: bool = False  # no whole text: it arrives through add_text(), then end()
    language: str | None = None  # None: the voice's language, else the default (see speech.voices)
    voice: str | None = None
    voice_policy: str = STRICT  # or FALLBACK: an unknown voice speaks with the default one
    clean: bool = False  # an LLM's Markdown made speakable (whole texts, or streamed sentence by sentence)
    normalize: bool | None = None  # figures read aloud (spoken forms); None: TTS_NORMALIZE
    max_audio_seconds: float | None = None  # None: TTS_MAX_AUDIO_SECONDS
    text_field: str = "text"  # how the surface names the text, for its messages
    listening: bool = True  # played as it comes; False when the answer is the whole audio at its end
    # Worked out once and carried: the language, route and voice (speech.voices.resolved_for), and
    # whether `text` already passed the whole-text checks (a cache lookup checks it before hashing).
    resolved: object = field(default=None, compare=False, repr=False)
    checked: bool = False
    background: bool = False  # a long document's piece: live requests go first (scheduler `_admit`)
