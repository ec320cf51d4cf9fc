#!/usr/bin/env python3
"""Time from the first word sent over the WebSocket to the first audio received, against /tts on the whole text.

    .venv/bin/python bench/text_stream_latency.py [--full] [--repeat 3] [--word-gap-ms 50]

Words are sent the way an LLM writes them (one every --word-gap-ms); both sides use the same
text and settings in this run. The /tts figure includes waiting for the whole text, which is
what a client without streaming text must do.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import msgpack
import requests
from websockets.sync.client import connect

from common import model_env, start_server, stop_server

TEXT = "Sure! The assistant starts speaking while it is still writing the rest of this answer for you."


def websocket_first_audio(base: str, words: list[str], gap: float) -> tuple[float, float]:
    """(seconds from the first word to the first audio, seconds until the last word was sent)."""
    url = base.replace("http://", "ws://") + "/api/tts_streaming?format=PcmMessagePack"
    with connect(url) as ws:
        assert msgpack.unpackb(ws.recv(timeout=60))["type"] == "Ready"
        first_audio = []
        started = time.perf_counter()

        def writer():
            for word in words:
                ws.send(msgpack.packb({"type": "Text", "text": word}))
                time.sleep(gap)
            ws.send(msgpack.packb({"type": "Eos"}))

        thread = threading.Thread(target=writer)
        thread.start()
        while True:
            message = msgpack.unpackb(ws.recv(timeout=600))
            if message["type"] == "Audio" and not first_audio:
                first_audio.append(time.perf_counter() - started)
                break
        thread.join()
        text_done = len(words) * gap
    return first_audio[0], text_done


def whole_text(base: str, text: str, gap: float, words: int) -> float:
    """Wait for the whole text (as the LLM writes it), then the full /tts answer."""
    started = time.perf_counter()
    requests.post(f"{base}/tts", json={"text": text, "language": "en", "clean": False}, timeout=600).raise_for_status()
    return words * gap + time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--word-gap-ms", type=float, default=50.0)
    args = parser.parse_args()
    base, app, server = start_server(model_env(args.full), dsm_temperature=0.0, cache_bytes=0)
    words, gap = TEXT.split(), args.word_gap_ms / 1000
    try:
        websocket_first_audio(base, words, gap)
        streamed, whole = [], []
        for _ in range(args.repeat):
            streamed.append(websocket_first_audio(base, words, gap)[0])
            whole.append(whole_text(base, TEXT, gap, len(words)))
        med = statistics.median
        print(f"{len(words)} words, one every {args.word_gap_ms:.0f} ms")
        print(f"WebSocket: first audio {med(streamed) * 1000:8.0f} ms after the first word")
        print(f"/tts:      first audio {med(whole) * 1000:8.0f} ms after the first word (whole text, then synthesis)")
        print(f"  -> {med(whole) / med(streamed):.1f}x sooner when the text streams in")
    finally:
        stop_server(app, server)


if __name__ == "__main__":
    main()
