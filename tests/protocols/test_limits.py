"""TTS_MAX_AUDIO_SECONDS bounds the audio a request gets back, whatever its pieces, pauses and speed."""

from __future__ import annotations

import base64
import io

import pytest
import soundfile as sf

from helpers import running_app

LIMIT = 3.0


@pytest.fixture(scope="module")
def short_app(tiny_env):
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_RATE_LIMIT": "",
           "TTS_CACHE_BYTES": "0", "TTS_MAX_AUDIO_SECONDS": str(LIMIT)}
    with running_app(env) as app:
        yield app


def seconds(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return len(samples) / rate


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_long_text_of_many_pieces_stops_at_the_limit(short_app, language):
    text = " ".join(f"Sentence number {i} goes on for a while." for i in range(30))
    body = short_app.test_client().post("/tts", json={"text": text, "language": language}).get_json()
    assert body["truncated"] is True
    assert body["duration"] <= LIMIT + 0.01
    assert seconds(base64.b64decode(body["audioContent"])) <= LIMIT + 0.01


@pytest.mark.parametrize("language", ["en", "es"])
def test_slowing_down_never_goes_past_the_limit(short_app, language):
    text = " ".join(f"Sentence number {i} goes on for a while." for i in range(6))
    response = short_app.test_client().post("/v1/audio/speech", json={
        "model": "tts-1", "input": text, "voice": "alloy", "language": language, "speed": 0.25,
        "response_format": "wav"})
    assert response.status_code == 200
    assert 0.5 < seconds(response.data) <= LIMIT + 0.01


def test_a_pause_is_at_most_ten_seconds(tiny_env):
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_RATE_LIMIT": "",
           "TTS_CACHE_BYTES": "0", "TTS_MAX_AUDIO_SECONDS": "30"}
    with running_app(env) as app:
        body = app.test_client().post("/tts", json={"text": 'Hola <break time="40s"/> adiós.', "language": "es",
                                                    "clean": False}).get_json()
    assert 10.0 <= body["duration"] < 10.0 + 8.0, body["duration"]
