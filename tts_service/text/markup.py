"""Markup that overrides how a stretch is read: `<say-as interpret-as="…">…</say-as>` and
`<sub alias="…">…</sub>`, the subset of SSML that Google, Azure and Polly document.

Anything malformed (no closing tag, no interpret-as or alias, a tag inside another) stays plain text:
markup is a hint from the client, never a reason to refuse. Each opening tag finds its closing tag by
bisecting a list of closing positions made in one pass, so many unclosed tags cost no more than
linear time.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

MAX_TAG_CHARS = 300  # an opening tag longer than this is prose, not markup
MAX_MARKUP_CHARS = 1000  # a streamed tag still open after this many characters is given up on

_OPEN = re.compile(rf"<(say-as|sub)(\s[^<>]{{0,{MAX_TAG_CHARS}}})?>", re.IGNORECASE)
_CLOSE = re.compile(r"</(say-as|sub)\s*>", re.IGNORECASE)
_ATTR = re.compile(r"""([A-Za-z][\w:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_TAIL = re.compile(r"</?(?:s(?:a(?:y(?:-(?:a(?:s)?)?)?)?|u(?:b)?)?)?$", re.IGNORECASE)


class Part(NamedTuple):
    """A stretch of text, and how markup asks for it to be read (None: as the rest of the text)."""

    text: str
    say_as: str | None = None
    alias: str | None = None
    format: str | None = None  # say-as's format= ("dmy", "mdy", "ymd" for dates), kept as written


def _attributes(body: str | None) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _ATTR.finditer(body or "")}


def _elements(text: str):
    """(start, end, Part) for each well-formed element, in order, not overlapping."""
    if "<" not in text:
        return
    closes: dict[str, list[tuple[int, int]]] = {"say-as": [], "sub": []}
    for match in _CLOSE.finditer(text):
        closes[match.group(1).lower()].append((match.start(), match.end()))
    starts = {name: [s for s, _ in spans] for name, spans in closes.items()}
    pos = 0
    for match in _OPEN.finditer(text):
        if match.start() < pos:
            continue  # inside an element already taken: nesting is not supported
        name = match.group(1).lower()
        at = bisect.bisect_left(starts[name], match.end())
        if at == len(starts[name]):
            continue
        close_start, close_end = closes[name][at]
        attrs = _attributes(match.group(2))
        inner = text[match.end():close_start]
        if name == "say-as":
            kind = attrs.get("interpret-as")
            if not kind:
                continue
            part = Part(inner, kind.strip().lower(), None, attrs.get("format"))
        else:
            alias = attrs.get("alias")
            if alias is None:
                continue
            part = Part(inner, None, alias)
        yield match.start(), close_end, part
        pos = close_end


def split_markup(text: str) -> list[Part]:
    """The text as parts: plain stretches as Part(text), marked ones with their say-as or alias."""
    parts: list[Part] = []
    at = 0
    for start, end, part in _elements(text):
        if start > at:
            parts.append(Part(text[at:start]))
        parts.append(part)
        at = end
    if at < len(text) or not parts:
        parts.append(Part(text[at:]))
    return parts


def has_markup(text: str) -> bool:
    """Whether `text` holds at least one well-formed say-as or sub element."""
    return next(_elements(text), None) is not None


def unfinished_markup(text: str) -> int:
    """Where an element that may still be arriving starts at the end of streamed text, else len(text).

    Text from there on is held back until the element closes (or grows past MAX_MARKUP_CHARS)."""
    if "<" not in text:
        return len(text)
    last_end = 0
    for _, end, _ in _elements(text):
        last_end = end
    floor = max(last_end, len(text) - MAX_MARKUP_CHARS)
    for match in _OPEN.finditer(text, floor):
        name = match.group(1).lower()
        if not _CLOSE.search(text, match.end()) or not any(
                m.group(1).lower() == name for m in _CLOSE.finditer(text, match.end())):
            return match.start()
    at = text.rfind("<")
    if at >= floor and ">" not in text[at:]:
        tail = text[at:]
        if _TAIL.match(tail) or re.match(r"<(?:say-as|sub)\s", tail, re.IGNORECASE) and len(tail) <= MAX_TAG_CHARS:
            return at
    return len(text)
