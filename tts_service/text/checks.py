"""The one text path: checks, limits, cleaning, pause tags and "nothing speakable", for every surface."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import spoken
from .lexicon import EMPTY, Lexicon
from .markup import has_markup, split_markup
from .pauses import clean_keeping_breaks, split_breaks
from .markdown import has_speech, speakable, split_sentences
from ..speech.refusals import BAD_REQUEST, TOO_LARGE, Refusal, nothing_to_say

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")

# Characters no engine should see, whatever "clean" says: controls (but tab and newline),
# zero-width and direction marks, the byte-order mark, noncharacters.
_INVISIBLE = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
                            *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070),
                            0xFEFF, 0xFFFE, 0xFFFF], " ")


def check_text(text: str) -> str:
    """Text every engine can take: lone surrogates refused, invisible characters made spaces."""
    if not isinstance(text, str):
        raise Refusal(BAD_REQUEST, "The text must be a string.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(BAD_REQUEST, "The text holds invalid Unicode (a lone surrogate such as \\ud800); "
                                   "send UTF-8 text.") from None
    return text.translate(_INVISIBLE)


def check_length(text: str, limit: int, field: str = "text") -> None:
    """Over the limit is refused, never cut: the client splits its text."""
    if len(text) > limit:
        raise Refusal(TOO_LARGE, f"'{field}' has {len(text)} characters; the limit is {limit}. "
                                 "Split it into several requests.", limit=limit, param=field)


def check_whole_text(text, limit: int, field: str = "text") -> str:
    """A whole text as a client sent it: a non-empty string within the limit."""
    if text is None:
        raise Refusal(BAD_REQUEST, f"'{field}' is required.", param=field)
    if not isinstance(text, str):
        raise Refusal(BAD_REQUEST, f"'{field}' must be a string.", param=field)
    if not text.strip():
        raise Refusal(BAD_REQUEST, f"'{field}' is empty.", param=field)
    check_length(text, limit, field)
    return text


@dataclass(frozen=True)
class Reading:
    """How figures are read: spoken forms on or off, and the operator's lexicon (applied first)."""

    normalize: bool = True
    lexicon: Lexicon = EMPTY


AS_WRITTEN = Reading(normalize=False)


def prepare_text(text: str, language: str, clean: bool, reading: Reading = Reading(), context: str = "",
                 replaced: list[tuple[str, str]] | None = None) -> str:
    """What the engine will be asked to say, pause tags kept; empty when nothing speakable is left.

    Markdown is made speakable first (`clean`), then figures are read (`reading`), line by line and
    before sentences are cut, so that "Sr.", "3.º" and "1.500" never end one; `<say-as>` and `<sub>`
    stretches are read as they ask, whatever the rest. `context`: a stream's text read just before
    this part, for the figures that depend on what precedes them. `replaced`, when given, collects
    each stretch said otherwise than written, as (written, spoken) in order (`written.py`)."""
    text = check_text(text)
    found = replaced if replaced is not None else []

    def figures(line: str) -> str:
        if not reading.normalize:
            return line
        said, pairs = read_figures(line, language, reading.lexicon, context)
        found.extend(pairs)
        return said

    def plain(part: str) -> str:
        return speakable(part, language, figures if reading.normalize else None) if clean else figures(part.strip())

    def words(part: str) -> str:
        if not has_markup(part):
            return plain(part)
        said = []
        for piece in split_markup(part):
            if piece.alias is not None or piece.say_as is not None:
                read = " ".join((piece.alias if piece.alias is not None else
                                 spoken.read_as(piece.say_as, piece.text, language) or piece.text).split())
                found.append((piece.text, read))
                said.append(read)
            else:
                said.append(plain(piece.text))
        return " ".join(filter(None, said))

    return clean_keeping_breaks(text, words)


def read_figures(line: str, language: str, lexicon: Lexicon = EMPTY, context: str = "") -> tuple[str, list]:
    """`line` with the lexicon's entries and then its figures read aloud, and each stretch replaced as
    (written, spoken), in order. A figure inside a lexicon entry's words is said, not listed."""
    entries = lexicon.readings(line, language)
    middle = spoken.apply(line, entries)
    figures = spoken.readings_after(context, middle, language)
    pairs, spans, shift = [], [], 0
    for entry in entries:
        start = entry.start + shift
        spans.append((start, start + len(entry.spoken)))
        pairs.append((start, line[entry.start:entry.end], entry.spoken))
        shift += len(entry.spoken) - (entry.end - entry.start)
    for figure in figures:
        if not any(start < figure.end and figure.start < end for start, end in spans):
            pairs.append((figure.start, middle[figure.start:figure.end], figure.spoken))
    pairs.sort(key=lambda pair: pair[0])
    return spoken.apply(middle, figures), [(written, said) for _, written, said in pairs]


def speech_parts(text: str) -> list[tuple[str, float]]:
    """(words, pause after them) pairs; refused when no part has anything to say."""
    parts = split_breaks(text)
    if not any(has_speech(words) for words, _ in parts):
        raise nothing_to_say()
    return parts


def complete_sentences(buffer: str) -> tuple[list[str], str]:
    """Split streamed text into the sentences known to be complete and the rest still being written.

    A sentence is complete at a paragraph break (outside a code fence), or at . ! ? … followed by
    whitespace when the service's own sentence rules agree (an abbreviation such as "Dr. " is not an end)."""
    sentences: list[str] = []
    while True:
        match = _PARAGRAPH.search(buffer)
        if match is None or buffer[:match.start()].count("```") % 2:
            break
        sentences += split_sentences(buffer[:match.start()])
        buffer = buffer[match.end():]
    pieces = split_sentences(buffer)
    if not pieces:
        return sentences, buffer
    *done, last = pieces
    rest = buffer[buffer.rfind(last):]
    # The last piece is complete when whitespace follows it and a following capital would start a new
    # sentence, unless it ends in an abbreviation ("EE. UU."), whose dot the next word decides.
    if buffer[-1:].isspace() and len(split_sentences(last + " X")) > 1 and not spoken.ends_in_abbreviation(last):
        done.append(last)
        rest = ""
    return sentences + done, rest


_WORD = re.compile(r"\S+")
_TAG = re.compile(r"<(/?)(say-as|sub|break)\b[^<>]*>?", re.IGNORECASE)
CONTEXT_CHARS = 200  # of a stream's text already read, kept for the figures after it


def figures_cut(context: str, text: str, language: str) -> int:
    """How much of streamed text (taken as written) may be read now, after `context` (what was read
    just before): its finished words but the last, unless that one ends a clause, and never a
    figure or abbreviation without the word after it ("21 páginas", "1.500 €", "EE. UU.", "March 3,
    2024"), so that text streamed in pieces is read as the same text sent whole."""
    words = list(_WORD.finditer(text))
    finished = words if text[-1:].isspace() else words[:-1]  # the last word may still be growing
    if not finished:
        return 0
    last = finished[-1].group()
    cut = finished[-1].end()
    if last[-1] not in ",;:.!?…" or any(char.isdigit() for char in last) \
            or last.rstrip(".") in spoken.not_sentence_ends() or spoken.ends_in_abbreviation(last):
        cut = finished[-1].start()  # the next word may change how it is read
    shift = len(context)
    tags = [(tag.start(), tag.end()) for tag in _TAG.finditer(text)]
    for reading in reversed(spoken.readings(context + text, language)):
        start, end = reading.start - shift, reading.end - shift
        if end <= 0:
            break
        if any(a <= start < b for a, b in tags):  # a figure inside a tag's attributes is no reading
            continue
        if text[end:end + 1] in (".", ",", ";", ":", "!", "?", "…") and end > 0:
            following = end  # its sentence or clause ends there: the next word changes nothing
        else:
            following = next((word.end() for word in words if word.start() >= end), None)
        if max(start, 0) < cut and (following is None or cut < following):
            cut = max(start, 0)
    for tag in _TAG.finditer(text):  # a tag, or a say-as/sub element, is read whole
        if tag.start() >= cut:
            break
        end = tag.end()
        if tag.group(2).lower() != "break" and not tag.group(1):
            closing = text.find(f"</{tag.group(2)}", tag.end())
            end = text.find(">", closing) + 1 if closing >= 0 else len(text) + 1
        if cut < end:
            return tag.start()
    return cut
