"""The spoken words mapped back to what was written: "mil quinientos euros" shown as "1.500 €".

Spoken forms, the lexicon and `<say-as>`/`<sub>` replace what was written with the words an engine
says. Word events keep those spoken words and their times (they are what is heard); each one also
carries the written form it reads, so that subtitles and a page lighting up words show the text
the user wrote. The first spoken word of a replaced stretch carries the whole written stretch, the
words after it an empty string ("part of the one before"); a word read as written carries nothing.

    transcript.add("Cuesta mil quinientos euros.", [("1.500 €", "mil quinientos euros")])
    transcript.written("Cuesta")    -> None
    transcript.written("mil")       -> "1.500 €"
    transcript.written("quinientos") -> ""
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import deque

from .pauses import split_breaks

# Words an engine may drop or split before the one it reports: how far ahead a word is looked for.
LOOKAHEAD = 4


_NOT_ALNUM = re.compile(r"[\W_]+")


def key(word: str) -> str:
    """A word as compared: lower case, letters and digits only ("Euros." and "euros" alike)."""
    return _NOT_ALNUM.sub("", word.lower())


def _keys(text: str) -> list[str]:
    """The keys of `text`'s words, in order; a word of marks only has none."""
    return [word for word in map(key, text.split()) if word]


def tokens(spoken: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    """(key, written form) for each of `spoken`'s words, in order; `pairs` are the replaced
    stretches (written, spoken), in the order they occur in `spoken`."""
    words = _keys(" ".join(part for part, _ in split_breaks(spoken)))
    shown: list[str | None] = [None] * len(words)
    where: dict[str, list[int]] = {}
    for index, word in enumerate(words):
        where.setdefault(word, []).append(index)
    at = 0
    for written, said in pairs:
        said_keys = _keys(said)
        if not said_keys or " ".join(written.split()) == " ".join(said.split()):
            continue
        found = _find(words, where, said_keys, at)
        if found < 0:
            continue  # changed again after it was read (a Markdown rule): shown as spoken
        shown[found] = " ".join(written.split())
        shown[found + 1:found + len(said_keys)] = [""] * (len(said_keys) - 1)
        at = found + len(said_keys)
    return list(zip(words, shown))


def _find(words: list[str], where: dict[str, list[int]], wanted: list[str], start: int) -> int:
    """Where `wanted` first occurs in `words` from `start`, or -1; `where` indexes each word's places."""
    places = where.get(wanted[0], [])
    for index in places[bisect.bisect_left(places, start):]:
        if words[index:index + len(wanted)] == wanted:
            return index
    return -1


class Transcript:
    """A session's spoken words still to be heard, in order, with the written form each reads.

    Text is added in the caller's thread as it is prepared; word events are matched in the
    session's thread, in order, a few words' slack for words an engine drops or says that were
    never added (a word not found leaves the transcript where it was)."""

    def __init__(self) -> None:
        self._tokens: deque[tuple[str, str | None]] = deque()  # (key, written form)
        self._lock = threading.Lock()

    def add(self, spoken: str, pairs: list[tuple[str, str]]) -> None:
        found = tokens(spoken, pairs)
        with self._lock:
            self._tokens.extend(found)

    def written(self, word: str) -> str | None:
        """What the spoken `word` reads as written: the stretch, "" for a later word of one, or None."""
        wanted = key(word)
        if not wanted:
            return None
        with self._lock:
            for index in range(min(LOOKAHEAD, len(self._tokens))):
                if self._tokens[index][0] == wanted:
                    written = self._tokens[index][1]
                    for _ in range(index + 1):
                        self._tokens.popleft()
                    return written
        return None


def display(words: list[dict]) -> list[dict]:
    """Word dicts ({"word", "start", "end"}, maybe "written") as the user wrote them: a replaced
    stretch one entry with its written text, from its first word's start to its last word's end,
    the marks around the spoken words kept ("¿mil euros?" shows "¿1.000 €?")."""
    out: list[dict] = []
    for word in words:
        written = word.get("written")
        if written == "" and out and "written" in out[-1]:
            last = out[-1]
            out[-1] = {**last, "end": max(last["end"], word["end"]), "after": _marks_after(word["word"])}
            continue
        entry = {"word": word["word"], "start": word["start"], "end": word["end"]}
        if written:
            entry.update(written=written, before=_marks_before(word["word"]), after=_marks_after(word["word"]))
        out.append(entry)
    return [_shown(entry) for entry in out]


def _marks_before(word: str) -> str:
    return word[:len(word) - len(word.lstrip(_MARKS))]


def _marks_after(word: str) -> str:
    return word[len(word.rstrip(_MARKS)):]


_MARKS = "¿¡\"'«»“”‘’()[]{}.,;:!?…"


def _shown(entry: dict) -> dict:
    written = entry.pop("written", None)
    before, after = entry.pop("before", ""), entry.pop("after", "")
    if written is not None:
        entry["word"] = (before if not written.startswith(before) else "") + written + \
            (after if not written.endswith(after) else "")
    return entry
