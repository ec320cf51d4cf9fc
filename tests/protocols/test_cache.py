"""The audio cache: hits skip the model, and the byte budget holds."""

from __future__ import annotations

from tts_service.audio.cache import AudioCache, CachedAudio


def test_repeated_request_is_served_from_memory(make_app):
    app = make_app()
    client = app.test_client()
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    body = {"text": "Cache me if you can.", "language": "en"}
    first = client.post("/tts", json=body)
    submitted = scheduler.stats.submitted
    second = client.post("/tts", json=body)
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert second.get_json()["audioContent"] == first.get_json()["audioContent"]
    assert scheduler.stats.submitted == submitted, "a cache hit reached the model"
    other_voice_or_format = client.post("/tts", json=body | {"format": "flac"})
    assert other_voice_or_format.headers["X-Cache"] == "miss"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'tts_cache_requests_total{result="hit"} 1.0' in metrics


def test_cache_stays_within_its_budget():
    cache = AudioCache(max_bytes=10_000)
    for n in range(50):
        cache.put(str(n), CachedAudio(b"x" * 1_000, {"n": n}))
        assert cache.bytes <= 10_000
    assert cache.get("0") is None, "the oldest entry was evicted"
    assert cache.get("49").meta == {"n": 49}
    cache.put("huge", CachedAudio(b"x" * 20_000, {}))
    assert cache.get("huge") is None and cache.bytes <= 10_000


def test_cache_evicts_least_recently_used():
    cache = AudioCache(max_bytes=3 * 1_256)
    for key in "abc":
        cache.put(key, CachedAudio(b"x" * 1_000, {}))
    cache.get("a")
    cache.put("d", CachedAudio(b"x" * 1_000, {}))
    assert cache.get("b") is None and cache.get("a") is not None


def test_cache_can_be_disabled(make_app):
    client = make_app(cache_bytes=0).test_client()
    body = {"text": "No cache.", "language": "en"}
    assert client.post("/tts", json=body).headers["X-Cache"] == "miss"
    assert client.post("/tts", json=body).headers["X-Cache"] == "miss"
