"""Where streamed words are cut into clauses, for engines that need whole texts: a pure cutter.

The session feeds it the words as they come; it hands back each stretch that is complete. A
clause ends at a sentence mark and a space; the session's first one may end sooner, at a comma
after `FIRST_CLAUSE_MIN_WORDS` words, so that a long first sentence starts to sound early; a
clause with no end in sight is cut at a space after `MAX_CLAUSE_CHARS`.
"""

from __future__ import annotations

import re

from ..text.markdown import has_speech

# A clause ends after one of these marks followed by a space (engines that need whole texts).
_CLAUSE_END = re.compile(r"[.!?…;:][\"')\]»”’]*\s")
# A clause with no end in sight is cut at a space once it is this long.
MAX_CLAUSE_CHARS = 400
# A session's first clause may end at a comma (or `;`, `:`) once this many words come before it,
# so that a long first sentence starts to sound before it is written to its end. Measured with
# bench/first_clause.py (docs/benchmarks.md): words written at 14 per second, the full-size Spanish
# Pocket TTS, best of 5. A 27-word first sentence spoke after 1.93 s waiting for its end, after
# 0.85 to 0.92 s from its comma after 12 words with any value from 4 to 12, 0.25 s with 3 (its first
# clause "Claro que sí,"); sentences with their comma after 7 and 6 words spoke after 0.56 and 0.43 s
# with 6, 1.85 and 1.79 s (their ends) with 8. Of 24 short sentences with a comma, 6 splits 4, 5
# splits 7, 4 splits 11 and 3 splits 16: 6 is the highest value that cuts both those sentences.
FIRST_CLAUSE_MIN_WORDS = 6
_CLAUSE_BREAK = re.compile(r"[,;:][\"')\]»”’]*\s")


def first_clause_end(text: str, min_words: int) -> int:
    """Where a session's first clause may end before its sentence does: just after the first comma,
    `;` or `:` (and a space) that follows at least `min_words` words; 0 while there is none."""
    words, start = 0, 0
    for match in _CLAUSE_BREAK.finditer(text):
        words += sum(1 for word in text[start:match.start()].split() if has_speech(word))
        start = match.start()
        if words >= min_words:
            return match.end()
    return 0


class ClauseCutter:
    """Words in, complete clauses out; `first_done` is set once the first clause was spoken."""

    def __init__(self, first_min_words: int | None = None, max_chars: int = MAX_CLAUSE_CHARS):
        self.first_min_words = FIRST_CLAUSE_MIN_WORDS if first_min_words is None else first_min_words
        self.max_chars = max_chars
        self.pending = ""  # words of a clause that has not ended yet
        self.first_done = False

    def feed(self, words: str, flush: bool = False) -> list[str]:
        """The clauses `words` completed (all that is held, with `flush`), in order; at most one stretch."""
        buffer = self.pending + words
        cut = 0
        for match in _CLAUSE_END.finditer(buffer, max(0, len(self.pending) - 3)):
            cut = match.end()
        if not cut and not self.first_done:
            cut = first_clause_end(buffer, self.first_min_words)
        if len(buffer) - cut > self.max_chars:
            space = buffer.rfind(" ", cut, len(buffer) - 1)
            cut = space + 1 if space > cut else len(buffer)
        if flush:
            cut = len(buffer)
        complete, self.pending = buffer[:cut], buffer[cut:]
        return [complete] if has_speech(complete) else []
