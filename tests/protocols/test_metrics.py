"""GET /metrics in Prometheus format, fed by real requests."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_audio_speed_and_load(make_app):
    client = make_app().test_client()
    assert client.post("/tts", json={"text": "Hello there.", "language": "en"}).status_code == 200
    assert client.post("/tts", json={"text": "", "language": "en"}).status_code == 400
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    values = samples(response.get_data(as_text=True))
    ok = values[("tts_http_requests_total", (("endpoint", "/tts"), ("method", "POST"), ("status", "200")))]
    bad = values[("tts_http_requests_total", (("endpoint", "/tts"), ("method", "POST"), ("status", "400")))]
    assert ok >= 1 and bad >= 1
    assert values[("tts_audio_seconds_total", (("engine", "dsm"), ("language", "en")))] > 0
    assert values[("tts_real_time_factor_count", (("engine", "dsm"),))] >= 1
    assert values[("tts_batch_size_count", (("engine", "dsm"),))] > 0
    assert values[("tts_model_load_seconds", (("engine", "dsm"),))] > 0
    assert values[("tts_model_ready", (("engine", "dsm"),))] == 1
    assert ("tts_queue_depth", (("engine", "dsm"),)) in values
    assert values[("tts_http_request_seconds_count", (("endpoint", "/tts"),))] >= 2


def test_health_and_metrics_say_how_far_ahead_of_real_time_each_engine_runs(make_app):
    client = make_app(realtime_margin=1.25).test_client()
    engine = client.get("/health").get_json()["engines"][0]
    assert engine["slots"] >= 1 and "realtime_headroom" not in engine  # no step measured yet
    assert client.post("/tts", json={"text": "Hello there.", "language": "en"}).status_code == 200
    engine = client.get("/health").get_json()["engines"][0]
    assert engine["realtime_headroom"] > 0
    values = samples(client.get("/metrics").get_data(as_text=True))
    assert values[("tts_realtime_headroom", (("engine", "dsm"),))] == pytest.approx(engine["realtime_headroom"], rel=0.05)
    assert ("tts_requests_held_for_realtime", (("engine", "dsm"),)) in values
