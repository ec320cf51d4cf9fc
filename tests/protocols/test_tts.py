"""POST /tts and GET /health on the real moshi engine with a tiny random-weight checkpoint."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from helpers import decode_wav, dsm_only, rms, spoken_words, wait_ready
from tts_service.engines.dsm import DsmEngine

HELLO = "Hello, I am Capibara6 with a natural voice."
CONTRACT_FIELDS = {"audioContent", "provider", "model", "language", "characters", "sample_rate", "format"}


def test_health_reports_ready_model(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["device"] == "cpu"
    assert body["model"].endswith("dsm")
    assert body["languages"] == {"en": "Kyutai DSM TTS", "fr": "Kyutai DSM TTS"}


def test_tts_returns_playable_wav_with_the_original_fields(client):
    response = client.post("/tts", json={"text": HELLO, "language": "en"})
    assert response.status_code == 200
    body = response.get_json()
    assert CONTRACT_FIELDS <= body.keys()
    assert body["provider"] == "Kyutai DSM TTS"
    assert body["language"] == "en"
    assert body["characters"] == len(HELLO)
    assert body["sample_rate"] == 24000 and body["format"] == "wav"
    audio, rate = decode_wav(body["audioContent"])
    assert rate == 24000
    assert audio.ndim == 1
    assert body["duration"] == pytest.approx(len(audio) / rate, abs=1e-3)
    assert len(audio) >= rate * 0.5
    assert rms(audio) > 1e-3, "audio is silence"


def test_longer_text_gives_longer_audio(client):
    short = client.post("/tts", json={"text": "Hello there.", "language": "en"}).get_json()
    long = client.post("/tts", json={"text": HELLO + " " + HELLO + " " + HELLO, "language": "en"}).get_json()
    assert decode_wav(long["audioContent"])[0].size > 2 * decode_wav(short["audioContent"])[0].size


def test_word_timestamps_follow_the_text(client):
    body = client.post("/tts", json={"text": HELLO, "language": "en", "words": True}).get_json()
    words = body["words"]
    assert [w["word"] for w in words] == spoken_words(HELLO, "en")
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(w["start"] < w["end"] <= body["duration"] + 1e-6 for w in words)


def test_regional_language_tags_are_accepted(client):
    body = client.post("/tts", json={"text": "Bonjour.", "language": "fr-FR"}).get_json()
    assert body["language"] == "fr"


@pytest.mark.parametrize("data, content_type, status, message", [
    ("{not json", "application/json", 400, "not valid JSON"),
    ("", "application/json", 400, "empty"),
    ("[1, 2]", "application/json", 400, "JSON object"),
    ('{"language": "en"}', "application/json", 400, "'text' is required"),
    ('{"text": "", "language": "en"}', "application/json", 400, "'text' is empty"),
    ('{"text": "   ", "language": "en"}', "application/json", 400, "'text' is empty"),
    ('{"text": 42, "language": "en"}', "application/json", 400, "'text' must be a string"),
    ('{"text": ["a"], "language": "en"}', "application/json", 400, "'text' must be a string"),
    ('{"text": "Hola", "language": "es"}', "application/json", 400, "Supported languages: en, fr"),
    ('{"text": "Hi", "language": 7}', "application/json", 400, "'language'"),
    ('{"text": "Hi", "language": "en", "format": "midi"}', "application/json", 400, "'format'"),
    ('{"text": "Hi", "language": "en", "voice": "nobody"}', "application/json", 400, "Unknown voice"),
    ("text=hello", "application/x-www-form-urlencoded", 415, "Content-Type: application/json"),
])
def test_bad_requests_get_clear_json_errors(client, data, content_type, status, message):
    response = client.post("/tts", data=data, content_type=content_type)
    assert response.status_code == status
    body = response.get_json()
    assert message in body["error"]
    assert body["request_id"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_unsupported_language_lists_the_supported_ones(client):
    body = client.post("/tts", json={"text": "Hallo", "language": "de"}).get_json()
    assert body["supported_languages"] == ["en", "fr"]


def test_text_over_the_limit_is_refused_not_cut(make_app):
    app = make_app(max_chars=50)
    response = app.test_client().post("/tts", json={"text": "a" * 51, "language": "en"})
    assert response.status_code == 413
    assert "limit is 50" in response.get_json()["error"]
    ok = app.test_client().post("/tts", json={"text": "word " * 10, "language": "en"})
    assert ok.status_code == 200


def test_wrong_method_is_405_json(client):
    response = client.get("/tts")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["error"]


def test_loading_model_answers_503_with_fallback(make_app, monkeypatch):
    release = threading.Event()
    real_load = DsmEngine._load

    def slow_load(self):
        release.wait(60)
        real_load(self)

    monkeypatch.setattr(DsmEngine, "_load", slow_load)
    app = make_app(wait=False)
    client = app.test_client()
    try:
        health = client.get("/health")
        assert health.status_code == 503 and health.get_json()["status"] == "loading"
        response = client.post("/tts", json={"text": HELLO, "language": "en"})
        assert response.status_code == 503
        assert response.get_json()["fallback"] is True
        assert response.headers["Retry-After"]
    finally:
        release.set()
    assert wait_ready(client)["status"] == "ok"
    assert client.get("/health").status_code == 200
    assert client.post("/tts", json={"text": HELLO, "language": "en"}).status_code == 200


def test_failed_load_keeps_the_process_up_and_says_why(make_app, tiny_env, tmp_path):
    env = dsm_only(tiny_env) | {"TTS_DSM_MODEL": str(tmp_path / "missing-model")}
    app = make_app(env)
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "error"
    assert "missing-model" in body["error"]
    response = client.post("/tts", json={"text": HELLO, "language": "en"})
    assert response.status_code == 503
    assert response.get_json()["fallback"] is True
    assert "missing-model" in response.get_json()["error"]


def test_unknown_hugging_face_repo_names_the_repo_and_the_way_out(make_app, tiny_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = dsm_only(tiny_env) | {"TTS_DSM_MODEL": "kyutai/no-such-tts-model"}
    body = make_app(env).test_client().get("/health").get_json()
    assert body["status"] == "error"
    assert "kyutai/no-such-tts-model" in body["error"]
    assert "HF_TOKEN" in body["error"] and "HF_HUB_OFFLINE" in body["error"]


def test_unexpected_failure_is_500_with_request_id_and_no_traceback(make_app, monkeypatch, caplog):
    app = make_app()

    def broken_step(self):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(DsmEngine, "step", broken_step)
    response = app.test_client().post("/tts", json={"text": HELLO, "language": "en"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["fallback"] is True and body["request_id"]
    assert "simulated kernel failure" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    monkeypatch.undo()
    # The worker survived: the next request is served.
    assert app.test_client().post("/tts", json={"text": HELLO, "language": "en"}).status_code == 200


def test_full_queue_answers_503_with_retry_after(make_app):
    app = make_app(max_queue=1, max_batch_size=1)

    start = threading.Barrier(16)

    def call(_):
        start.wait(30)  # all at once: one slot and one place in the queue cannot take them all
        return app.test_client().post("/tts", json={"text": HELLO * 3, "language": "en"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, range(16)))
    statuses = [r.status_code for r in responses]
    assert 200 in statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy, statuses
    assert all(r.headers["Retry-After"] and r.get_json()["fallback"] is True for r in busy)


def test_four_concurrent_requests_each_get_their_own_complete_audio(client):
    texts = ["Hello there.", HELLO, "One two three four five six seven eight.", "Bonjour."]

    def call(text):
        return client.post("/tts", json={"text": text, "language": "en", "words": True}).get_json()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, texts))
    for text, body in zip(texts, results):
        assert [w["word"] for w in body["words"]] == spoken_words(text, "en"), "a response carries another's words"
        audio, rate = decode_wav(body["audioContent"])
        assert rate == 24000 and rms(audio) > 1e-3
        assert body["words"][-1]["start"] < len(audio) / rate


def test_a_request_is_resolved_and_checked_once(client, monkeypatch):
    """Its language and voice are worked out once (cache key, session, adapter) and its text checked once."""
    from tts_service.speech import voices
    from tts_service.text import checks

    resolved, checked = [], []
    real_resolve, real_check = voices.resolve, checks.check_whole_text
    monkeypatch.setattr(voices, "resolve", lambda *args: resolved.append(args) or real_resolve(*args))
    monkeypatch.setattr("tts_service.speech.whole.check_whole_text",
                        lambda *args: checked.append(args) or real_check(*args))
    monkeypatch.setattr("tts_service.speech.session.check_whole_text",
                        lambda *args: checked.append(args) or real_check(*args))
    for path, body in (("/tts", {"text": "Hello there, one more time.", "language": "en"}),
                       ("/v1/audio/speech", {"model": "tts-1", "input": "Hello there, once again.", "language": "en",
                                             "stream": False})):
        resolved.clear()
        checked.clear()
        response = client.post(path, json=body)
        assert response.status_code == 200, response.get_json()
        assert len(resolved) == 1 and len(checked) == 1, (path, resolved, checked)
