"""Every format streamed as it is made, at the rate a client asks for, on every HTTP surface and the
JSON WebSocket; OpenAI's server-sent events read by the openai SDK; telephone audio decoded back.

The service runs on a real socket (werkzeug, threaded) so that chunked answers arrive as they are sent.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import openai
import pytest
import requests
from websockets.sync.client import connect

from helpers import decode_audio, dsm_only, json_session, rms, running_app, served, until_closed

FORMATS = ["wav", "pcm", "ulaw", "alaw", "mp3", "opus", "aac", "flac"]
LONG = ("Hola, esta es una respuesta larga del asistente. Tiene varias frases para que la voz dure unos "
        "segundos. Así se ve si el audio llega mientras se genera, y no solo al final.")


@pytest.fixture(scope="module")
def base(tiny_env):
    """Spanish on the tiny Pocket TTS model, English on tiny DSM."""
    env = {**dsm_only(tiny_env), "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
           "TTS_DEFAULT_LANGUAGE": "es"}
    with running_app(env) as app, served(app) as url:
        yield url


def expected_rate(fmt: str, asked: int | None) -> int:
    if fmt == "opus":
        return 48000  # Opus decodes at 48 kHz whatever it was made from
    return asked or 24000


def check_speech(data: bytes, fmt: str, rate: int | None, seconds: float | None = None) -> np.ndarray:
    samples, decoded_rate = decode_audio(data, fmt, rate or 24000)
    assert decoded_rate == expected_rate(fmt, rate)
    assert len(samples) > 0.5 * decoded_rate, "under half a second of audio"
    assert rms(samples) > 1e-3, "silence"
    if seconds is not None:  # the same speech, whatever the format: lengths agree within encoder padding
        assert abs(len(samples) / decoded_rate - seconds) < 0.15, (len(samples) / decoded_rate, seconds)
    return samples


def timed_post(url: str, body: dict) -> tuple[requests.Response, bytes, float, float, int]:
    """The answer, its bytes, when its first and last byte came (s), and in how many pieces."""
    start = time.monotonic()
    response = requests.post(url, json=body, stream=True, timeout=120)
    first = None
    parts = []
    for part in response.iter_content(chunk_size=None):
        if part:
            first = first if first is not None else time.monotonic() - start
            parts.append(part)
    return response, b"".join(parts), first or 0.0, time.monotonic() - start, len(parts)


def test_the_openai_api_streams_every_format_by_default(base):
    for fmt in FORMATS:
        response, data, first, total, parts = timed_post(
            f"{base}/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": LONG,
                                        "response_format": fmt, "language": "en"})
        assert response.status_code == 200, response.text
        assert response.headers["X-Cache"] == "miss"
        assert "Content-Length" not in response.headers, "a streamed answer has no length up front"
        assert parts > 1, f"{fmt}: one piece: the answer came whole"
        assert first < 0.5 * total, f"{fmt}: the first byte came at {first:.2f} s of {total:.2f} s"
        check_speech(data, fmt, None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tts_stream_streams_every_format(base, fmt):
    response, data, _, _, parts = timed_post(f"{base}/tts/stream", {"text": LONG, "format": fmt})
    assert response.status_code == 200, response.text
    assert parts > 1
    check_speech(data, fmt, int(response.headers["X-Sample-Rate"]) if fmt != "opus" else None)


@pytest.mark.parametrize("fmt, rate", [("ulaw", 8000), ("alaw", 8000), ("pcm", 16000), ("wav", 44100),
                                       ("mp3", 22050), ("flac", 48000), ("opus", 16000), ("aac", 16000)])
def test_a_sample_rate_is_honoured_on_every_http_surface(base, fmt, rate):
    whole = requests.post(f"{base}/tts", json={"text": "Hola, te llamo por teléfono.", "format": fmt,
                                               "sample_rate": rate}, timeout=120)
    assert whole.status_code == 200, whole.text
    assert whole.json()["sample_rate"] == rate
    samples = check_speech(base64.b64decode(whole.json()["audioContent"]), fmt, rate)
    seconds = len(samples) / expected_rate(fmt, rate)
    for url, body in [(f"{base}/tts/stream", {"text": "Hola, te llamo por teléfono.", "format": fmt}),
                      (f"{base}/v1/audio/speech", {"input": "Hola, te llamo por teléfono.", "voice": "alloy",
                                                   "response_format": fmt})]:
        response = requests.post(url, json={**body, "sample_rate": rate}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.headers["X-Sample-Rate"] == str(rate)
        if fmt in ("pcm", "ulaw", "alaw"):
            assert f"rate={rate}" in response.headers["Content-Type"]
        # Pocket TTS samples afresh each time: the length may differ a little, never by the rate.
        check_speech(response.content, fmt, rate, None)
        assert 0.3 < len(decode_audio(response.content, fmt, rate)[0]) / expected_rate(fmt, rate) / seconds < 3


def test_mu_law_for_a_phone_line_decodes_back_to_speech(base):
    pcm = requests.post(f"{base}/v1/audio/speech", json={"input": "Buenos días, le atiende el asistente.",
                                                         "voice": "alloy", "response_format": "pcm",
                                                         "sample_rate": 8000, "language": "en"}, timeout=120)
    ulaw = requests.post(f"{base}/v1/audio/speech", json={"input": "Buenos días, le atiende el asistente.",
                                                          "voice": "alloy", "response_format": "ulaw",
                                                          "sample_rate": 8000, "language": "en"}, timeout=120)
    assert ulaw.headers["Content-Type"].startswith("audio/PCMU;rate=8000")
    speech = check_speech(ulaw.content, "ulaw", 8000)
    linear = check_speech(pcm.content, "pcm", 8000)
    # One byte a sample against two: the same length of speech (each take is sampled afresh).
    assert 0.5 < len(speech) / len(linear) < 2


def test_the_json_websocket_sends_telephone_audio(base):
    url = base.replace("http://", "ws://") + "/ws/tts?format=ulaw&sample_rate=8000"
    with connect(url, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "text", "text": "Hola, ¿en qué puedo ayudarte hoy?"}))
        ws.send(json.dumps({"type": "end"}))
        audio, events = json_session(until_closed(ws))
    assert events[0]["type"] == "ready" and events[0]["format"] == "ulaw" and events[0]["sample_rate"] == 8000
    assert events[-1]["type"] == "done"
    samples = check_speech(audio, "ulaw", 8000)
    assert abs(len(samples) / 8000 - events[-1]["duration"]) < 0.1


@pytest.mark.parametrize("query, param", [("format=midi", "format"), ("sample_rate=12345", "sample_rate"),
                                          ("sample_rate=loud", "sample_rate")])
def test_the_json_websocket_refuses_a_bad_format_in_the_protocol(base, query, param):
    with connect(base.replace("http://", "ws://") + "/ws/tts?" + query, open_timeout=30) as ws:
        event = json.loads(ws.recv(timeout=30))
    assert event == {"type": "error", "code": "bad_request", "message": event["message"]}
    assert param in event["message"]


@pytest.mark.parametrize("url, body, param", [
    ("/tts", {"text": "Hola.", "sample_rate": 11025}, "sample_rate"),
    ("/tts/stream", {"text": "Hola.", "sample_rate": "8000Hz"}, "sample_rate"),
    ("/tts/stream", {"text": "Hola.", "format": "midi"}, "format"),
    ("/v1/audio/speech", {"input": "Hola.", "sample_rate": True}, "sample_rate"),
    ("/v1/audio/speech", {"input": "Hola.", "stream_format": "chunks"}, "stream_format"),
    ("/v1/audio/speech", {"input": "Hola.", "instructions": 7}, "instructions"),
    ("/v1/audio/speech", {"input": "Hola.", "voice": {"name": "alloy"}}, "voice"),
])
def test_bad_output_fields_are_400s_before_any_audio(base, url, body, param):
    response = requests.post(base + url, json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    if url.startswith("/v1"):
        assert error["param"] == param and error["type"] == "invalid_request_error"
    else:
        assert param in error


def test_openai_sse_is_read_by_the_openai_sdk(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    events = []
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="coral", input=LONG, response_format="mp3", stream_format="sse",
            instructions="Speak in a cheerful and positive tone.") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    deltas = [event for event in events if event["type"] == "speech.audio.delta"]
    assert len(deltas) > 1 and events[-1]["type"] == "speech.audio.done"
    assert [event["type"] for event in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(LONG) and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    check_speech(b"".join(base64.b64decode(event["audio"]) for event in deltas), "mp3", None)


def test_openai_voice_may_be_an_id_and_instructions_are_accepted(base):
    voices = requests.get(f"{base}/voices", timeout=30).json()["languages"]["es"]
    default = voices["default"]
    response = requests.post(f"{base}/v1/audio/speech", json={
        "model": "tts-1", "input": "Hola.", "voice": {"id": default}, "response_format": "wav",
        "instructions": "Habla despacio."}, timeout=120)
    assert response.status_code == 200, response.text
    check_speech(response.content, "wav", None)


def test_a_repeated_openai_request_is_answered_from_the_cache(base):
    body = {"model": "tts-1", "voice": "alloy", "input": "Un momento, por favor.", "response_format": "wav",
            "stream": False}
    first = requests.post(f"{base}/v1/audio/speech", json=body, timeout=120)
    streamed = requests.post(f"{base}/v1/audio/speech", json={**body, "stream": True}, timeout=120)
    assert first.headers["X-Cache"] == "miss"
    assert streamed.headers["X-Cache"] == "hit" and streamed.content == first.content


@pytest.mark.parametrize("path", ["/api/tts_streaming", "/api/tts-streaming"])
def test_kyutai_protocol_answers_under_both_names(base, path):
    post = requests.post(base + path, json={"text": "Hello there, friend."}, timeout=120)
    assert post.status_code == 200, post.text
    check_speech(post.content, "wav", None)
    import msgpack

    with connect(base.replace("http://", "ws://") + path + "?format=PcmMessagePack", open_timeout=30) as ws:
        ws.send(msgpack.packb({"type": "Text", "text": "Hello there, friend."}))
        ws.send(msgpack.packb({"type": "Eos"}))
        messages = [msgpack.unpackb(m) for m in until_closed(ws)]
    pcm = np.concatenate([np.asarray(m["pcm"], dtype=np.float32) for m in messages if m["type"] == "Audio"])
    assert len(pcm) > 0.5 * 24000 and rms(pcm) > 1e-3
