"""A long Markdown text cut into chapters and pieces of a few sentences, with the core's sentence rules.

Headings (`#` to `######`, outside code fences) start chapters and are spoken as their own piece;
paragraphs are cut into sentences by `split_sentences` (the rule every whole text is cut with), and
up to `PIECE_SENTENCES` sentences of one paragraph make a piece. List items, table rows and quotes
keep their own lines, so that the cleaning reads them as it reads them in a chat answer. Each piece
is spoken later by `speech.whole.speak`, which cleans it and reads its figures like any request.
"""

from __future__ import annotations

import re

from ..text.markdown import has_speech, split_sentences

PIECE_SENTENCES = 3
PIECE_CHARS = 500
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_BLOCK_LINE = re.compile(r"^ {0,3}([-*+>|]|\d{1,9}[.)])\s")


def _title(raw: str) -> str:
    """A heading as a chapter title: its words, without Markdown's emphasis and code marks."""
    return " ".join(re.sub(r"[*_`]+", "", raw).split())


def _cut_long(sentence: str, limit: int) -> list[str]:
    """A sentence longer than `limit`, cut between words (a single word longer than it is cut too)."""
    out: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _blocks(lines: list[str]) -> list[list[str]]:
    """Paragraphs (runs of lines between blank lines), a fenced code block kept whole."""
    blocks: list[list[str]] = []
    current: list[str] = []
    fence = None
    for line in lines:
        match = _FENCE.match(line)
        if fence is not None:
            current.append(line)
            if match and match.group(1) == fence:
                fence = None
                blocks.append(current)
                current = []
            continue
        if match:
            if current:
                blocks.append(current)
            current, fence = [line], match.group(1)
        elif not line.strip():
            if current:
                blocks.append(current)
            current = []
        else:
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def _pieces_of(block: list[str], limit: int) -> list[str]:
    if _FENCE.match(block[0]):
        return ["\n".join(block)[:limit]]  # the cleaning says "(code sample)" for it
    if any(_BLOCK_LINE.match(line) for line in block):
        units = [line for line in block if line.strip()]  # one line each: a list item, a table row
        joiner = "\n"
    else:
        units = split_sentences(" ".join(line.strip() for line in block))
        joiner = " "
    units = [part for unit in units for part in _cut_long(unit, limit)] if joiner == " " else \
        [unit[:limit] for unit in units]
    pieces: list[str] = []
    current: list[str] = []
    for unit in units:
        if current and (len(current) >= PIECE_SENTENCES or len(joiner.join(current + [unit])) > limit):
            pieces.append(joiner.join(current))
            current = []
        current.append(unit)
    if current:
        pieces.append(joiner.join(current))
    return pieces


def plan(text: str, max_chars: int) -> dict:
    """{"pieces": [{"text", "chapter"}], "chapters": [{"title", "piece"}]}: `chapter` is the index of the
    chapter a piece belongs to (None before the first heading), `piece` the chapter's first piece."""
    limit = max(min(PIECE_CHARS, max_chars), 40)
    pieces: list[dict] = []
    chapters: list[dict] = []
    section: list[str] = []
    fence = None

    def flush() -> None:
        chapter = len(chapters) - 1 if chapters else None
        for block in _blocks(section):
            for piece in _pieces_of(block, limit):
                if has_speech(piece):
                    pieces.append({"text": piece, "chapter": chapter})
        section.clear()

    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is not None:
            fence = None if match and match.group(1) == fence else fence
            section.append(line)
            continue
        if match:
            fence = match.group(1)
            section.append(line)
            continue
        heading = _HEADING.match(line)
        if heading and has_speech(heading.group(2)):
            flush()
            title = _title(heading.group(2))
            chapters.append({"title": title, "piece": len(pieces)})
            pieces.append({"text": title[:limit], "chapter": len(chapters) - 1})
        else:
            section.append(line)
    flush()
    return {"pieces": pieces, "chapters": chapters}
