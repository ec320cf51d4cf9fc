"""Subtitles from word times: WebVTT and SRT cues of a few words, cut at sentence ends and pauses.

A cue holds at most `MAX_WORDS` words and `MAX_CHARS` characters, ends after a sentence's last
word, and never spans a silence longer than `BREATH_SECONDS` between two words, so that no
caption stays on screen over a pause. Times are the words' own: a cue starts with its first
word and ends with its last.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..text.written import display

FORMATS = ("vtt", "srt")
MAX_WORDS = 7
MAX_CHARS = 42  # a subtitle line's usual width
BREATH_SECONDS = 0.3
_SENTENCE_END = (".", "!", "?", "…", ";", ":")
_CLOSING = "\"')]»”’"


@dataclass
class Cue:
    start: float
    end: float
    text: str


def cues(words: list[dict]) -> list[Cue]:
    """`words` ({"word", "start", "end"} in seconds, in order, maybe "written") grouped into cues,
    each shown as written: "1.500 €" over the time "mil quinientos euros" is spoken."""
    words = display(words)
    out: list[Cue] = []
    group: list[dict] = []

    def close() -> None:
        if group:
            out.append(Cue(group[0]["start"], max(group[-1]["end"], group[0]["start"]),
                           " ".join(word["word"] for word in group)))
            group.clear()

    for word in words:
        if group:
            text = " ".join(w["word"] for w in group) + " " + word["word"]
            pause = word["start"] - group[-1]["end"]
            ends_sentence = group[-1]["word"].rstrip(_CLOSING).endswith(_SENTENCE_END)
            if len(group) >= MAX_WORDS or len(text) > MAX_CHARS or pause > BREATH_SECONDS or ends_sentence:
                close()
        group.append(word)
    close()
    return out


def _clock(seconds: float, separator: str) -> str:
    millis = max(int(round(seconds * 1000)), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _safe(text: str) -> str:
    """Cue text cannot hold a blank line or `-->`; WebVTT also reads `<` and `&` as markup."""
    return " ".join(text.split()).replace("-->", "->")


def webvtt(words: list[dict]) -> str:
    lines = ["WEBVTT", ""]
    for cue in cues(words):
        text = _safe(cue.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}", text, ""]
    return "\n".join(lines)


def srt(words: list[dict]) -> str:
    lines = []
    for number, cue in enumerate(cues(words), 1):
        lines += [str(number), f"{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}", _safe(cue.text), ""]
    return "\n".join(lines)


def render(words: list[dict], fmt: str) -> str:
    return webvtt(words) if fmt == "vtt" else srt(words)
