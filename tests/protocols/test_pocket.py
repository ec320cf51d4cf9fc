"""Spanish through Pocket TTS, language routing, voices, and both engines serving at once."""

from __future__ import annotations

import concurrent.futures

import pytest

from helpers import decode_wav, rms, running_app

HOLA = "Hola, soy Capibara6 con voz natural de Kyutai."


@pytest.fixture(scope="module")
def both_app(tiny_env):
    """English and French on DSM, the other languages on the tiny Pocket TTS model."""
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "es,it"}) as app:
        yield app


@pytest.fixture
def both(both_app):
    return both_app.test_client()


def test_spanish_is_spoken_by_pocket_tts(both):
    response = both.post("/tts", json={"text": HOLA, "language": "es"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["provider"] == "Kyutai Pocket TTS"
    assert body["model"].endswith(".yaml")
    assert body["language"] == "es" and body["voice"] == "tiny-es"
    audio, rate = decode_wav(body["audioContent"])
    assert rate == 24000 and len(audio) > rate // 2 and rms(audio) > 1e-3


def test_spanish_is_the_default_language(both):
    assert both.post("/tts", json={"text": HOLA}).get_json()["provider"] == "Kyutai Pocket TTS"


def test_pocket_audio_grows_with_the_text(both):
    short = both.post("/tts", json={"text": "Hola.", "language": "es"}).get_json()
    long = both.post("/tts", json={"text": " ".join([HOLA] * 3), "language": "es"}).get_json()
    assert long["duration"] > 2 * short["duration"]


def test_english_goes_where_the_routes_say(both, make_app, tiny_env):
    assert both.post("/tts", json={"text": "Hello.", "language": "en"}).get_json()["provider"] == "Kyutai DSM TTS"
    pocket_only = make_app({**tiny_env, "TTS_ROUTES": "en=pocket", "TTS_POCKET_LANGUAGES": "en"}).test_client()
    body = pocket_only.post("/tts", json={"text": "Hello.", "language": "en"}).get_json()
    assert body["provider"] == "Kyutai Pocket TTS"
    health = pocket_only.get("/health").get_json()
    assert [e["name"] for e in health["engines"]] == ["pocket-en"], "an unused engine was loaded"


def test_default_routes_follow_the_device(tiny_env):
    from tts_service.config import Settings
    from tts_service.routing import default_routes

    settings = Settings.from_env({})
    on_gpu, on_cpu = default_routes(settings, cuda=True), default_routes(settings, cuda=False)
    assert on_gpu["es"] == on_cpu["es"] == "pocket"
    assert on_gpu["en"] == on_gpu["fr"] == "dsm"
    assert on_cpu["en"] == on_cpu["fr"] == "pocket"
    assert default_routes(Settings.from_env({"TTS_ROUTES": "en=dsm"}), cuda=False)["en"] == "dsm"


def test_voices_lists_what_works(both):
    listing = both.get("/voices").get_json()["languages"]
    assert set(listing) == {"en", "fr", "es", "it"}
    assert listing["es"]["engine"] == "Kyutai Pocket TTS" and listing["es"]["default"] == "tiny-es"
    assert listing["en"]["engine"] == "Kyutai DSM TTS"
    for language, entry in listing.items():
        assert entry["default"] in entry["voices"]
        for voice in entry["voices"]:
            response = both.post("/tts", json={"text": "Hola." if language != "en" else "Hi.",
                                               "language": language, "voice": voice})
            assert response.status_code == 200, (language, voice, response.get_json())
            assert response.get_json()["voice"] == voice


@pytest.mark.parametrize("body, valid_key", [
    ({"text": "Hola", "language": "es", "voice": "alloy"}, "valid_voices"),
    ({"text": "Hola", "language": "es", "voice": "tiny-voice"}, "valid_voices"),
    ({"text": "Hello", "language": "en", "voice": "tiny-es"}, "valid_voices"),
    ({"text": "Hallo", "language": "de"}, "supported_languages"),
    ({"text": "Hej", "language": "sv"}, "supported_languages"),
])
def test_bad_voice_or_language_is_400_listing_valid_ones(both, body, valid_key):
    response = both.post("/tts", json=body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer[valid_key]
    for name in answer[valid_key]:
        assert name in answer["error"]


def test_custom_voice_folder_adds_a_voice(make_app, tiny_env, tmp_path):
    import shutil
    from pathlib import Path

    folder = tmp_path / "voices"
    folder.mkdir()
    shutil.copy(Path(tiny_env["TTS_VOICE_DIR"]) / "tiny-es.wav", folder / "abuela.wav")
    client = make_app({**tiny_env, "TTS_ROUTES": "es=pocket", "TTS_POCKET_LANGUAGES": "es",
                       "TTS_VOICE_DIR": str(folder), "TTS_POCKET_VOICE": "abuela"}).test_client()
    assert client.get("/voices").get_json()["languages"]["es"]["voices"] == ["abuela"]
    assert client.post("/tts", json={"text": HOLA, "voice": "abuela"}).get_json()["voice"] == "abuela"


def test_both_engines_answer_concurrent_requests(both):
    jobs = [("es", HOLA), ("en", "Hello there, friend."), ("es", "Buenos días."), ("en", "Good morning."),
            ("it", "Buongiorno."), ("fr", "Bonjour.")]

    def call(job):
        language, text = job
        return both.post("/tts", json={"text": text, "language": language}).get_json()

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(call, jobs))
    for (language, _), body in zip(jobs, results):
        assert body["language"] == language
        expected = "Kyutai DSM TTS" if language in ("en", "fr") else "Kyutai Pocket TTS"
        assert body["provider"] == expected
        audio, rate = decode_wav(body["audioContent"])
        assert rate == 24000 and rms(audio) > 1e-3


def test_pocket_streams_too(both):
    response = both.post("/tts/stream", json={"text": HOLA, "language": "es", "format": "pcm"})
    assert response.status_code == 200
    assert response.headers["X-TTS-Provider"] == "Kyutai Pocket TTS"
    assert len(response.data) > 24000


def test_one_voice_folder_serves_both_engines(make_app, tiny_env, tmp_path):
    import shutil
    from pathlib import Path

    folder = tmp_path / "voices"
    folder.mkdir()
    shutil.copy(Path(tiny_env["TTS_VOICE_DIR"]) / "tiny-es.wav", folder / "maria.wav")
    shutil.copy(tiny_env["TTS_DSM_VOICE"], folder / "narrator.safetensors")
    client = make_app({**tiny_env, "TTS_ROUTES": "es=pocket,en=dsm", "TTS_POCKET_LANGUAGES": "es",
                       "TTS_VOICE_DIR": str(folder), "TTS_POCKET_VOICE": "maria"}).test_client()
    listing = client.get("/voices").get_json()["languages"]
    assert listing["es"]["voices"] == ["maria"]
    assert "narrator" in listing["en"]["voices"] and "maria" not in listing["en"]["voices"]
    assert client.post("/tts", json={"text": "Hi.", "language": "en", "voice": "narrator"}).status_code == 200


def test_a_decoder_thread_failure_is_logged_when_its_rows_leave(caplog):
    """The chunk in flight is awaited as rows leave; if the decoder thread failed, the log says so."""
    import concurrent.futures
    import logging

    import collections

    from tts_service.engines.pocket.pipeline import DecodePipeline

    decode = DecodePipeline(collections.deque(), "es", 24000)
    failed = concurrent.futures.Future()
    failed.set_exception(RuntimeError("decoder broke"))
    decode._decoding = failed
    with caplog.at_level(logging.ERROR, logger="tts_service.engines.pocket.pipeline"):
        decode.settle()
    assert decode._decoding.result() == []
    assert any("decoder broke" in record.getMessage() and record.exc_info for record in caplog.records)
