#!/usr/bin/env python3
"""Time to first audio byte of /tts/stream against the whole /tts answer, and HTTP against the engine.

    .venv/bin/python bench/latency.py [--full] [--repeat 3]

Both comparisons use the same text and settings, measured side by side in this run, with the
audio cache off (every answer is synthesized):
- streaming: time to the first audio byte of POST /tts/stream vs the time of the full POST /tts;
- overhead: one POST /tts over HTTP vs the same synthesis driven directly on the engine
  (its own scheduler, no Flask, no JSON, no base64).
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests

from common import model_env, start_server, stop_server

TEXT = "Hola! A user should hear the first words while the rest of this sentence is still being generated."


def first_byte(base: str, body: dict) -> tuple[float, float]:
    start = time.perf_counter()
    first = None
    with requests.post(f"{base}/tts/stream", json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=None):
            if first is None and len(chunk) > 44:
                first = time.perf_counter() - start
            elif first is None:
                continue
    return first, time.perf_counter() - start


def full(base: str, body: dict) -> float:
    start = time.perf_counter()
    requests.post(f"{base}/tts", json=body, timeout=600).raise_for_status()
    return time.perf_counter() - start


def direct(app, text: str) -> float:
    from tts_service.engines.base import SynthesisRequest

    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    start = time.perf_counter()
    scheduler.submit(SynthesisRequest(text=text, language="en")).result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # The audio cache is off: every repeat of the same text must be synthesized, not remembered.
    base, app, server = start_server(model_env(args.full), dsm_temperature=0.0, cache_bytes=0)
    body = {"text": TEXT, "language": "en"}
    try:
        full(base, body)
        ttfb, stream_total, whole, http, engine = [], [], [], [], []
        for _ in range(args.repeat):
            first, total = first_byte(base, body)
            ttfb.append(first)
            stream_total.append(total)
            whole.append(full(base, body))
            engine.append(direct(app, TEXT))
            http.append(full(base, body))
        med = statistics.median
        print(f"/tts/stream first audio byte: {med(ttfb) * 1000:8.0f} ms (stream ends at {med(stream_total):.2f} s)")
        print(f"/tts full answer:             {med(whole) * 1000:8.0f} ms")
        print(f"  -> first audio {med(whole) / med(ttfb):.1f}x sooner when streaming")
        print(f"engine directly:              {med(engine) * 1000:8.0f} ms")
        print(f"/tts over HTTP:               {med(http) * 1000:8.0f} ms")
        print(f"  -> HTTP costs {med(http) / med(engine):.3f}x the engine time "
              f"({(med(http) - med(engine)) * 1000:+.0f} ms)")
    finally:
        stop_server(app, server)


if __name__ == "__main__":
    main()
