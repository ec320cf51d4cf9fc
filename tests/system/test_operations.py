"""Production serving under gunicorn: graceful SIGTERM, access log, sustained load, stable memory.

Every load here is bounded in count and time and goes to loopback only.
"""

from __future__ import annotations

import concurrent.futures
import io
import signal
import time
from pathlib import Path

import requests
import soundfile as sf

from helpers import decode_wav, dsm_only, rms, start_gunicorn, wait_until

LONG = "Speech synthesis turns written words into sound, one frame at a time, for every listener."


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(tiny_env, tmp_path):
    env = dsm_only(tiny_env) | {"TTS_DSM_TEMPERATURE": "0"}
    process, base = start_gunicorn(env, tmp_path)
    try:
        body = {"text": LONG, "language": "en"}
        reference = decode_wav(requests.post(f"{base}/tts", json=body, timeout=60).json()["audioContent"])[0]

        def full():
            response = requests.post(f"{base}/tts", json=body, timeout=120)
            return response.status_code, decode_wav(response.json()["audioContent"])[0]

        def stream():
            response = requests.post(f"{base}/tts/stream", json=body, timeout=120)
            return response.status_code, sf.read(io.BytesIO(response.content), dtype="float32")[0]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(f) for f in (full, stream, full, stream)]
            wait_until(lambda: sum(e["active"] for e in requests.get(f"{base}/health", timeout=5).json()["engines"])
                       >= 2, 30)
            process.send_signal(signal.SIGTERM)
            results = [f.result(timeout=120) for f in futures]

        for status, audio in results:
            assert status == 200
            assert len(audio) == len(reference), "an in-flight response was cut by the shutdown"

        def refused() -> bool:
            try:
                requests.get(f"{base}/health", timeout=2)
            except requests.ConnectionError:
                return True
            return False

        wait_until(refused, 5, step=0.1, message="new requests were still served after SIGTERM")
        assert process.wait(60) == 0
        log = (tmp_path / "tts.log").read_text()
        assert log.count("POST /tts ") >= 3 and "POST /tts/stream 200" in log
    finally:
        if process.poll() is None:
            process.kill()


def test_sustained_load_has_no_errors_no_mixed_audio_and_stable_memory(tiny_env, tmp_path):
    env = dsm_only(tiny_env) | {"TTS_RATE_LIMIT": "40/minute", "TTS_MAX_QUEUE": "4", "TTS_MAX_BATCH_SIZE": "4"}
    process, base = start_gunicorn(env, tmp_path)
    texts = ["Hello there.", "One two three four five.", LONG, "Bonjour tout le monde."]
    try:
        def client(index: int) -> list[tuple[int, dict]]:
            session = requests.Session()
            out = []
            for round_ in range(5):
                text = texts[(index + round_) % len(texts)]
                response = session.post(f"{base}/tts", json={"text": text, "language": "en", "words": True},
                                        timeout=120)
                out.append((response.status_code, response.json() | {"sent": text}))
            return out

        client(0)  # warm-up, so that memory is measured after the first allocations
        before = rss_kb(process.pid)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = [r for batch in pool.map(client, range(8)) for r in batch]
        assert time.monotonic() - started < 300
        after = rss_kb(process.pid)

        statuses = [status for status, _ in results]
        assert set(statuses) <= {200, 429, 503}, statuses
        assert statuses.count(200) >= 10
        assert 429 in statuses, "the rate limit never applied"
        for status, body in results:
            if status == 200:
                assert [w["word"] for w in body["words"]] == body["sent"].split()
                audio, rate = decode_wav(body["audioContent"])
                assert rate == 24000 and rms(audio) > 1e-3
            else:
                assert body["error"] and body["request_id"]
        assert after - before < 300_000, f"resident memory grew by {(after - before) // 1024} MB"
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'tts_http_requests_total{endpoint="/tts",method="POST",status="429"}' in metrics
        assert "tts_audio_seconds_total" in metrics and "tts_batch_size_bucket" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
