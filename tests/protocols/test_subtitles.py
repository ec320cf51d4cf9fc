"""/tts's subtitles: WebVTT and SRT read back by webvtt-py and srt, cues that follow the words."""

from __future__ import annotations

import html

import pytest
import srt
import webvtt

from helpers import decode_wav, running_app
from tts_service.audio import subtitles
from tts_service.text.written import display

TEXT = "Hola, soy Capibara6 con voz natural de Kyutai y hablo despacio. ¿Qué tal estás hoy, amigo mío?"


@pytest.fixture(scope="module")
def client(tiny_env):
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_POCKET_WORD_HEADS": "1:0 1:3"}) as app:
        yield app.test_client()


def _read(fmt: str, text: str) -> list[tuple[float, float, str]]:
    if fmt == "vtt":
        return [(_seconds(c.start), _seconds(c.end), c.text) for c in webvtt.from_string(text)]
    return [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(text)]


def _seconds(clock: str) -> float:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.mark.parametrize("fmt", ["vtt", "srt"])
@pytest.mark.parametrize("language, text", [("es", TEXT), ("en", "Hello there, my friend. How are you today?")])
def test_subtitles_are_read_back_and_follow_the_words(client, fmt, language, text):
    body = client.post("/tts", json={"text": text, "language": language, "subtitles": fmt, "words": True}).get_json()
    audio, rate = decode_wav(body["audioContent"])
    cues = _read(fmt, body["subtitles"])
    words = display(body["words"])  # a figure read aloud is one entry, as written
    assert cues and " ".join(cue for _, _, cue in cues).split() == " ".join(w["word"] for w in words).split()
    at = 0
    for start, end, cue in cues:
        inside, shown = [], 0
        while shown < len(cue.split()):
            inside.append(words[at])
            shown += len(words[at]["word"].split())
            at += 1
        assert start == pytest.approx(inside[0]["start"], abs=1e-3)
        assert end == pytest.approx(inside[-1]["end"], abs=1e-3)
        assert 0 <= start <= end <= len(audio) / rate + 1e-3
        assert len(inside) <= subtitles.MAX_WORDS
        for before, after in zip(inside, inside[1:]):
            assert after["start"] - before["end"] <= subtitles.BREATH_SECONDS


def test_subtitles_show_what_was_written_while_the_words_say_it(client):
    text = "El pedido de 1.500 € llega el 3/5/2024 a las 14:30."
    body = client.post("/tts", json={"text": text, "language": "es", "subtitles": "srt", "words": True}).get_json()
    said = [w["word"] for w in body["words"]]
    assert "quinientos" in said and "1.500" not in " ".join(said)  # the words are what is heard
    assert body["words"][said.index("mil")]["written"] == "1.500 €"
    assert body["words"][said.index("quinientos")]["written"] == ""
    shown = " ".join(c.content for c in srt.parse(body["subtitles"]))
    assert " ".join(shown.split()) == text


def test_subtitles_without_words_answer_no_word_list(client):
    body = client.post("/tts", json={"text": "Hola, amigo.", "subtitles": "srt"}).get_json()
    assert "words" not in body and body["word_times"] == "aligned"
    assert [c.content for c in srt.parse(body["subtitles"])] == ["Hola, amigo."]


@pytest.mark.parametrize("value", ["ass", "VTT", 1, True, ["vtt"]])
def test_an_unknown_subtitle_format_is_a_400(client, value):
    response = client.post("/tts", json={"text": "Hola.", "subtitles": value})
    assert response.status_code == 400
    assert "vtt, srt" in response.get_json()["error"]


def test_a_cue_never_spans_a_pause_or_runs_past_a_sentence():
    words = [{"word": w, "start": s, "end": e} for w, s, e in [
        ("uno", 0.0, 0.2), ("dos", 0.2, 0.4), ("tres.", 0.4, 0.6), ("cuatro", 0.6, 0.8),
        ("cinco", 1.5, 1.7), ("seis", 1.7, 1.9)] + [(f"w{i}", 2 + i / 10, 2.05 + i / 10) for i in range(9)]]
    texts = [cue.text for cue in subtitles.cues(words)]
    assert texts[:3] == ["uno dos tres.", "cuatro", "cinco seis w0 w1 w2 w3 w4"]
    assert " ".join(texts).split() == [w["word"] for w in words]


def test_cue_text_cannot_break_the_format():
    words = [{"word": "a-->b", "start": 0.0, "end": 0.5}, {"word": "<i>&", "start": 0.5, "end": 1.0}]
    (caption,) = webvtt.from_string(subtitles.webvtt(words))
    assert html.unescape(caption.text) == "a->b <i>&"
    (entry,) = srt.parse(subtitles.srt(words))
    assert entry.content == "a->b <i>&"
