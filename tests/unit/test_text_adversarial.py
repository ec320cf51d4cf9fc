"""Text cleaning on hostile and random input: bounded time, never an error, no words lost or invented."""

from __future__ import annotations

import importlib.util
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT

from tts_service.text import markdown as text_module
from tts_service.text.markdown import WORDS, group_sentences, speakable, split_sentences

BENCH = ROOT / "bench" / "text_cleaning.py"
_spec = importlib.util.spec_from_file_location("text_cleaning_bench", BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SHAPES = bench.shapes(3000)  # TTS_MAX_CHARS's default
STRAY = set("*_#|~^<>=\\{}[]`")
# The largest growth is a two-character "1%" said as "1 por ciento ": 6.5 times.
GROWTH = 7


@pytest.mark.parametrize("name", list(SHAPES))
def test_adversarial_shapes_are_cleaned_in_well_under_a_second(name):
    # Thread CPU time, so that other processes on a busy machine do not count; a backtracking
    # pattern spends tens of seconds on these shapes, the parser tens of milliseconds at most.
    start = time.thread_time()
    bench.clean(text_module, SHAPES[name])
    assert time.thread_time() - start < 1.0, name


def test_a_three_thousand_letter_word_passes_unchanged():
    word = "a" * 3000
    assert speakable(word, "en") == word
    assert split_sentences(word) == [word]


PIECES = (list("*_#-+=|~`>[]()!\\$€%°&@.:,;?¡¿\"'«»“”<>/ \n\t") + list("abcXYZ019áéñüçÀ")
          + ["😀", "🚀", "☕", "\u200b", "\u202e", "\ufeff", "\x00", "\ud800", "\u0301",
             "http://", "www.", "```", "</b>", "<b and c>", "Dr. ", "e.g. "])
MARKDOWNISH = st.lists(st.sampled_from(PIECES), max_size=200).map("".join)
WORDLIKE = st.text(alphabet=st.sampled_from(list("abcñé019 *_`$%&")), min_size=1, max_size=20)
BLOCKS = st.one_of(
    WORDLIKE.map(lambda w: "#" * 2 + " " + w),
    st.lists(WORDLIKE, min_size=1, max_size=4).map(lambda items: "\n".join(f"- {i}" for i in items)),
    st.lists(WORDLIKE, min_size=1, max_size=4).map(lambda items: "\n".join(f"{n}. {i}" for n, i in enumerate(items))),
    st.lists(st.lists(WORDLIKE, min_size=2, max_size=2), min_size=1, max_size=4).map(
        lambda rows: "\n".join(["| a | b |", "|---|---|"] + [f"| {r[0]} | {r[1]} |" for r in rows])),
    WORDLIKE.map(lambda w: f"```\n{w}\n```"),
    WORDLIKE.map(lambda w: f"> {w}"),
    WORDLIKE.map(lambda w: f"[{w}](https://example.com/{w.strip()})"),
    WORDLIKE,
)
STRUCTURED = st.lists(BLOCKS, max_size=8).map("\n\n".join)
LANGUAGES = st.sampled_from(list(WORDS) + ["xx"])


def alphanumerics(text: str) -> list[str]:
    return [c for c in text if c.isalnum()]


def check_sentences(text: str) -> list[str]:
    sentences = split_sentences(text)
    assert all(any(c.isalnum() for c in s) for s in sentences), sentences
    assert alphanumerics(" ".join(sentences)) == alphanumerics(text)
    assert " ".join(group_sentences(sentences, groups=3, max_chars=40)) == " ".join(sentences)
    return sentences


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(MARKDOWNISH, STRUCTURED, st.text(max_size=200)), language=LANGUAGES)
def test_random_markdown_is_cleaned_without_errors_or_lost_words(text, language):
    spoken = speakable(text, language)
    assert len(spoken) <= GROWTH * len(text) + 100
    assert not STRAY & set(spoken), spoken
    assert all(unicodedata.category(c)[0] != "C" and unicodedata.category(c) != "So" for c in spoken), spoken
    check_sentences(spoken)
    check_sentences(text)
