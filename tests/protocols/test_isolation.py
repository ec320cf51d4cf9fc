"""Each request is an island: its own work happens before the worker, its bad input is its own 4xx,
and a fault no request brought fails only the jobs in that step while the engine carries on."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import pytest
from websockets.sync.client import connect

from helpers import decode_wav, rms, running_app, served

HELLO = "Hello there, this sentence is long enough to take a few steps."
HOLA = "Hola, esta frase es lo bastante larga para tardar unos pasos."


@pytest.fixture(scope="module")
def both_app(tiny_env):
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_RATE_LIMIT": "",
           "TTS_CACHE_BYTES": "0"}
    with running_app(env) as app:
        yield app


@pytest.mark.parametrize("language, text", [("en", HELLO), ("es", HOLA)])
def test_a_fault_in_a_step_fails_that_step_and_the_engine_recovers(both_app, language, text):
    engine = both_app.extensions["tts_service"].router.routes[language].engine
    real_step = engine.step
    steps = {"n": 0}
    fault = threading.Event()

    def faulty_step():
        steps["n"] += 1
        if steps["n"] == 3 and not fault.is_set():
            fault.set()
            raise MemoryError("simulated: out of memory in the middle of a batch")
        return real_step()

    engine.step = faulty_step
    try:
        client = both_app.test_client()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda t: client.post("/tts", json={"text": t, "language": language}),
                                    [text, text]))
    finally:
        del engine.step
    assert fault.is_set()
    assert 500 in [r.status_code for r in answers]
    for response in answers:
        assert response.status_code in (200, 500)
        assert "simulated" not in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
    # The engine starts clean: the next requests are served in full.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        after = list(pool.map(lambda t: client.post("/tts", json={"text": t, "language": language}), [text, text]))
    for response in after:
        assert response.status_code == 200
        audio, rate = decode_wav(response.get_json()["audioContent"])
        assert rate == 24000 and len(audio) > rate // 2 and rms(audio) > 1e-3


def test_an_unknown_repository_voice_is_refused_at_once(both_app):
    client = both_app.test_client()
    started = time.monotonic()
    response = client.post("/tts", json={"text": "Hello.", "language": "en",
                                         "voice": "expresso/no-such-voice_channel1_001s.wav"})
    assert response.status_code == 400
    assert "GET /voices" in response.get_json()["error"] or "Valid voices" in response.get_json()["error"]
    assert time.monotonic() - started < 5, "a voice lookup went to the network on the request's path"


@pytest.mark.parametrize("path, key", [("/tts", "text"), ("/tts/stream", "text"), ("/v1/audio/speech", "input")])
def test_json_nested_too_deeply_is_a_400(both_app, path, key):
    body = '{"%s": "Hola", "x": %s%s}' % (key, "[" * 50000, "]" * 50000)
    response = both_app.test_client().post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in json.dumps(response.get_json())


@pytest.mark.parametrize("path, key", [("/tts", "text"), ("/tts/stream", "text"), ("/v1/audio/speech", "input")])
def test_a_lone_surrogate_is_a_400_that_names_it(both_app, path, key):
    body = '{"%s": "Hola \\ud800 mundo", "language": "es"}' % key
    response = both_app.test_client().post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "surrogate" in json.dumps(response.get_json())


def test_json_nested_too_deeply_is_an_error_message_on_the_websocket(both_app):
    with served(both_app) as base:
        with connect(base.replace("http://", "ws://") + "/ws/tts?language=es", open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send("[" * 50000 + "]" * 50000)
            message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "error" and "JSON" in message["message"]


def test_pieces_are_prepared_outside_the_worker(both_app):
    """Text rules and tokens run in the requester's thread: the worker never calls them."""
    router = both_app.extensions["tts_service"].router
    seen = []
    engines = [router.routes["en"].engine, router.routes["es"].engine]
    originals = [(engine, engine.prepare) for engine in engines]
    for engine, prepare in originals:
        def spy(request, prepare=prepare):
            seen.append(threading.current_thread().name)
            return prepare(request)
        engine.prepare = spy
    try:
        client = both_app.test_client()
        assert client.post("/tts", json={"text": HELLO, "language": "en"}).status_code == 200
        assert client.post("/tts", json={"text": HOLA, "language": "es"}).status_code == 200
    finally:
        for engine, _ in originals:
            del engine.prepare
    assert seen and not [name for name in seen if name.startswith("tts-worker")]


def test_a_repository_voice_in_the_local_cache_is_listed_and_spoken_offline(tiny_env, tmp_path, monkeypatch):
    """The voice repository is listed once at load (here from the local cache, as offline) and a
    listed voice is found without a network round trip per request."""
    import shutil

    from huggingface_hub import constants

    voice_file = tiny_env["TTS_DSM_VOICE"]
    suffix = voice_file[voice_file.index(".", voice_file.rindex("/")):]  # ".<sig>@<epoch>.safetensors"
    snapshot = tmp_path / "hub" / "models--kyutai--tts-voices" / "snapshots" / ("0" * 40)
    (snapshot / "expresso").mkdir(parents=True)
    shutil.copy(voice_file, snapshot / "expresso" / f"ex99-cached_voice.wav{suffix}")
    refs = tmp_path / "hub" / "models--kyutai--tts-voices" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "", "TTS_DEFAULT_LANGUAGE": "en"}
    with running_app(env) as app:
        client = app.test_client()
        response = client.post("/tts", json={"text": "Hello.", "language": "en",
                                             "voice": "expresso/ex99-cached_voice.wav"})
        assert response.status_code == 200, response.get_json()
        audio, rate = decode_wav(response.get_json()["audioContent"])
        assert rate == 24000 and rms(audio) > 1e-3
        missing = client.post("/tts", json={"text": "Hello.", "language": "en",
                                            "voice": "expresso/ex98-not_cached.wav"})
        assert missing.status_code == 400
