"""POST /tts/stream, batching of concurrent requests, disconnects and the audio length limit."""

from __future__ import annotations

import concurrent.futures
import io
import struct
import time

import numpy as np
import pytest
import requests
import soundfile as sf

from helpers import decode_wav, rms, wait_until

LONG = ("Speech synthesis turns written words into sound, one frame at a time, "
        "and a listener hears the first words while the rest is still being generated.")


def read_stream_wav(data: bytes) -> tuple[np.ndarray, int]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    rate = struct.unpack("<I", data[24:28])[0]
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == rate
    return audio, rate


def test_streamed_audio_matches_tts_in_format_and_length(live):
    base, _ = live(dsm_temperature=0.0)
    body = {"text": LONG, "language": "en"}
    full = requests.post(f"{base}/tts", json=body, timeout=60).json()
    reference, rate = decode_wav(full["audioContent"])

    streamed = requests.post(f"{base}/tts/stream", json=body, timeout=60)
    assert streamed.status_code == 200
    assert streamed.headers["Content-Type"] == "audio/wav"
    assert streamed.headers["X-Sample-Rate"] == "24000"
    assert streamed.headers["X-TTS-Provider"] == full["provider"]
    audio, stream_rate = read_stream_wav(streamed.content)
    assert stream_rate == rate == 24000
    assert len(audio) == len(reference)
    assert np.abs(audio - reference).max() < 2 / 32767 + 1e-6

    raw = requests.post(f"{base}/tts/stream", json=body | {"format": "pcm"}, timeout=60)
    assert raw.headers["Content-Type"].startswith("audio/L16;rate=24000")
    assert len(raw.content) == 2 * len(reference)


def test_first_chunk_arrives_before_generation_ends(live):
    base, _ = live()
    start = time.monotonic()
    arrivals = []
    with requests.post(f"{base}/tts/stream", json={"text": LONG + " " + LONG, "language": "en"},
                       stream=True, timeout=60) as response:
        for chunk in response.iter_content(chunk_size=None):
            arrivals.append((time.monotonic() - start, len(chunk)))
    first, total = arrivals[0][0], arrivals[-1][0]
    assert len(arrivals) > 10
    assert first < total / 3, f"first chunk at {first:.2f}s of {total:.2f}s"


@pytest.mark.parametrize("body, message", [
    ({"text": "Hi", "language": "en", "format": "midi"}, "'format' must be one of"),
    ({"text": "Hi", "language": "en", "sample_rate": 11025}, "'sample_rate' must be one of"),
    ({"text": "", "language": "en"}, "'text' is empty"),
    ({"text": "Hola", "language": "xx"}, "Supported languages"),
])
def test_stream_errors_before_audio_are_json(live, body, message):
    base, _ = live()
    response = requests.post(f"{base}/tts/stream", json=body, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_disconnecting_client_frees_its_slot(live):
    base, app = live()
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    with requests.post(f"{base}/tts/stream", json={"text": LONG * 3, "language": "en"},
                       stream=True, timeout=60) as response:
        next(response.iter_content(chunk_size=4096))
    wait_until(lambda: scheduler.active == 0, 20, step=0.05,
               message=lambda: f"{scheduler.active} jobs still active 20 s after the client left")
    assert scheduler.stats.cancelled >= 1
    again = requests.post(f"{base}/tts", json={"text": "Still here.", "language": "en"}, timeout=60)
    assert again.status_code == 200


def test_audio_length_limit_stops_generation_and_says_so(make_app):
    client = make_app(max_audio_seconds=2.0).test_client()
    body = client.post("/tts", json={"text": LONG, "language": "en"}).get_json()
    assert body["truncated"] is True
    assert body["duration"] <= 2.0
    short = client.post("/tts", json={"text": "Hi.", "language": "en"}).get_json()
    assert short["truncated"] is False


def test_concurrent_requests_are_generated_as_one_batch(make_app):
    app = make_app(batch_wait_ms=200)
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    scheduler.stats.batch_sizes.clear()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda _: app.test_client().post(
            "/tts", json={"text": LONG, "language": "en"}).get_json(), range(4)))
    assert all(decode_wav(b["audioContent"])[1] == 24000 for b in bodies)
    assert max(scheduler.stats.batch_sizes) == 4, scheduler.stats.batch_sizes


def test_mixed_concurrent_clients_each_get_their_own_audio(live):
    base, app = live(dsm_temperature=0.0)
    texts = {
        "short": "Hi there.",
        "medium": "Bonjour, je suis une voix naturelle et gratuite.",
        "long": LONG,
        "numbers": "One two three four five six seven eight nine ten.",
    }
    solo = {}
    for name, text in texts.items():
        solo[name] = requests.post(f"{base}/tts", json={"text": text, "language": "en", "words": True},
                                   timeout=60).json()

    def full(name):
        return name, requests.post(f"{base}/tts", json={"text": texts[name], "language": "en", "words": True},
                                   timeout=120).json()

    def stream(name):
        response = requests.post(f"{base}/tts/stream", json={"text": texts[name], "language": "en"}, timeout=120)
        return name, read_stream_wav(response.content)[0]

    def leave(_):
        with requests.post(f"{base}/tts/stream", json={"text": LONG * 2, "language": "en"},
                           stream=True, timeout=60) as response:
            next(response.iter_content(chunk_size=1024))
        return "left", None

    jobs = [(full, "short"), (full, "long"), (stream, "medium"), (stream, "numbers"),
            (leave, None), (full, "numbers"), (stream, "short"), (leave, None)]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs))

    for (kind, _), (name, value) in zip(jobs, results):
        if kind is full:
            assert [w["word"] for w in value["words"]] == texts[name].split()
            audio = decode_wav(value["audioContent"])[0]
        elif kind is stream:
            audio = value
        else:
            continue
        expected = decode_wav(solo[name]["audioContent"])[0]
        assert rms(audio) > 1e-3
        assert abs(len(audio) - len(expected)) <= 0.15 * len(expected), (name, len(audio), len(expected))
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    wait_until(lambda: scheduler.active == 0, 20, step=0.05,
               message=lambda: f"{scheduler.active} jobs still active 20 s after every client was answered")
    assert requests.post(f"{base}/tts", json={"text": "Worker alive.", "language": "en"}, timeout=60).ok
