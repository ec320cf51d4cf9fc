"""Pause tags: `<break time="1.5s"/>`, moshi-server's syntax, checked before any engine sees them.

moshi's `script_to_entries` parses the tag with a loose pattern and `float()`, so a tag such as
`<break time="1x5s"/>` or one with hundreds of digits raises inside generation. Here every tag is
read with a bounded pattern, its time capped at moshi-server's 10 s, and rewritten in the one form
moshi reads; a malformed tag becomes nothing (and is logged), never an error.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MAX_BREAK_SECONDS = 10.0
# One quantifier each, over disjoint characters: linear time whatever the text.
_TAG = re.compile(r"<break\b([^<>]*)>", re.IGNORECASE)
_TIME = re.compile(r"""\s*time\s*=\s*(["'])(\d{1,6}(?:\.\d{1,6})?)(ms|s)\1\s*(?:/\s*)?""", re.IGNORECASE)


def break_seconds(tag_body: str) -> float | None:
    """The pause a tag asks for, capped at MAX_BREAK_SECONDS; None when the tag is malformed."""
    match = _TIME.fullmatch(tag_body)
    if match is None:
        return None
    seconds = float(match.group(2)) / (1000.0 if match.group(3).lower() == "ms" else 1.0)
    return min(seconds, MAX_BREAK_SECONDS)


def normalize_breaks(text: str) -> str:
    """Every `<break …>` tag in the one form moshi parses, or removed when malformed."""
    if "<" not in text:
        return text

    def rewrite(match: re.Match) -> str:
        seconds = break_seconds(match.group(1))
        if seconds is None:
            logger.info("ignored a malformed pause tag")
            return " "
        return f' <break time="{seconds:.2f}s"/> ' if seconds > 0 else " "

    return _TAG.sub(rewrite, text)


def split_breaks(text: str) -> list[tuple[str, float]]:
    """The text as (words, pause after them in seconds) pairs, in order; malformed tags pause 0.

    The last pair's pause is 0 unless the text ends with a tag. Surfaces that cannot pause inside a
    piece (Pocket TTS, the joins of /tts) speak each part on its own and put silence between.
    """
    if "<" not in text:
        return [(text, 0.0)]
    parts: list[tuple[str, float]] = []
    words, start = "", 0
    for match in _TAG.finditer(text):
        seconds = break_seconds(match.group(1))
        if seconds is None:
            logger.info("ignored a malformed pause tag")
        words += text[start:match.start()] + " "
        start = match.end()
        if not seconds:
            continue  # a malformed or zero pause: the words go on
        if parts and not words.strip():
            parts[-1] = (parts[-1][0], min(parts[-1][1] + seconds, MAX_BREAK_SECONDS))
        else:
            parts.append((words, seconds))
        words = ""
    words += text[start:]
    if words.strip() or not parts:
        parts.append((words, 0.0))
    return parts


def clean_keeping_breaks(text: str, clean) -> str:
    """`clean` applied to the words between pause tags, the tags kept in their one valid form."""
    parts = split_breaks(text)
    if len(parts) == 1 and parts[0][1] == 0:
        return clean(text)
    out = []
    for words, seconds in parts:
        spoken = clean(words) if words.strip() else ""
        if spoken:
            out.append(spoken)
        if seconds > 0:
            out.append(f'<break time="{seconds:.2f}s"/>')
    return " ".join(out)


# A tag still arriving: "<" with no ">" after it, short enough to still become a tag.
MAX_TAG_CHARS = 64


def unfinished_tag(text: str) -> int:
    """Where a pause tag that has not fully arrived starts in streamed text, or -1."""
    at = text.rfind("<")
    if at < 0 or ">" in text[at:] or len(text) - at > MAX_TAG_CHARS:
        return -1
    start = text[at:at + 6].lower()
    return at if "<break".startswith(start) else -1  # "3 < 5" is prose, not a tag
