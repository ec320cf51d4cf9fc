"""OpenAI's speech API, driven by the official `openai` client, and audio formats."""

from __future__ import annotations

import openai
import pytest

from helpers import decode_audio, dsm_only, rms, running_app, served


@pytest.fixture(scope="module")
def openai_client(tiny_env):
    with running_app({**dsm_only(tiny_env), "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_DEFAULT_LANGUAGE": "es"}) as app, served(app) as base:
        yield openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=120)


decode = decode_audio


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm", "ulaw", "alaw"])
def test_openai_client_gets_playable_audio_in_every_format(openai_client, fmt):
    response = openai_client.audio.speech.create(model="tts-1", voice="alloy", input="Hola, ¿qué tal?",
                                                 response_format=fmt)
    samples, rate = decode(response.content, fmt)
    assert rate == (48000 if fmt == "opus" else 24000)  # FFmpeg decodes Opus at 48 kHz
    assert len(samples) > 0.5 * rate
    assert rms(samples) > 1e-3


def test_speed_changes_the_length_not_the_rate(openai_client):
    normal = decode(openai_client.audio.speech.create(model="tts-1", voice="nova", input="Hola a todos.",
                                                      response_format="wav").content, "wav")[0]
    fast = decode(openai_client.audio.speech.create(model="tts-1", voice="nova", input="Hola a todos.",
                                                    response_format="wav", speed=2.0).content, "wav")[0]
    assert abs(len(fast) - len(normal) / 2) < 0.1 * len(normal)


def test_service_names_are_accepted(openai_client):
    response = openai_client.audio.speech.create(model="dsm", voice="tiny-voice", input="Hello there.",
                                                 response_format="wav", extra_body={"language": "en"})
    assert decode(response.content, "wav")[1] == 24000


def test_streamed_response(openai_client):
    with openai_client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="Hello, streaming world.", response_format="pcm",
            extra_body={"language": "en", "stream_format": "audio"}) as response:
        data = b"".join(response.iter_bytes())
    assert len(data) > 24000


@pytest.mark.parametrize("kwargs, param", [
    ({"response_format": "midi"}, "response_format"),
    ({"voice": "darth"}, "voice"),
    ({"model": "tts-9000"}, "model"),
    ({"speed": 5.0}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"input": ""}, "input"),
])
def test_bad_parameters_get_openai_shaped_400s(openai_client, kwargs, param):
    arguments = {"model": "tts-1", "voice": "alloy", "input": "Hola."} | kwargs
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(**arguments)
    error = caught.value.body
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_models_are_listed(openai_client):
    ids = {model.id for model in openai_client.models.list()}
    assert {"tts-1", "tts-1-hd", "dsm", "pocket"} <= ids
