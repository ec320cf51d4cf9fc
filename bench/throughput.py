#!/usr/bin/env python3
"""Throughput with 1, 2, 4 and 8 concurrent clients over HTTP, against the same requests one at a time.

    .venv/bin/python bench/throughput.py            # tiny random-weight DSM
    .venv/bin/python bench/throughput.py --full     # full-size random-weight DSM (slow on a CPU)

Prints audio seconds generated per wall second, and the speed-up of batching over serving the
same requests sequentially, both measured in this run, with the audio cache off.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time

import requests

from common import model_env, start_server, stop_server

TEXT = ("A server shared by many users should serve them together, "
        "not one after another, and every user should hear their own words.")


def audio_seconds(base: str, text: str) -> float:
    response = requests.post(f"{base}/tts", json={"text": text, "language": "en"}, timeout=600)
    response.raise_for_status()
    return response.json()["duration"]


def run(base: str, clients: int, text: str, concurrent_: bool) -> tuple[float, float]:
    start = time.perf_counter()
    if concurrent_:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            total = sum(pool.map(lambda _: audio_seconds(base, text), range(clients)))
    else:
        total = sum(audio_seconds(base, text) for _ in range(clients))
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size random-weight DSM")
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    # The audio cache is off: the same text every time would otherwise be answered from memory.
    base, app, server = start_server(model_env(args.full), max_batch_size=max(counts), dsm_temperature=0.0,
                                     cache_bytes=0)
    try:
        audio_seconds(base, "Warm up.")
        print(f"{'clients':>7} {'sequential x RT':>16} {'concurrent x RT':>16} {'speed-up':>9}")
        for clients in counts:
            seq_audio, seq_wall = run(base, clients, args.text, concurrent_=False)
            con_audio, con_wall = run(base, clients, args.text, concurrent_=True)
            print(f"{clients:>7} {seq_audio / seq_wall:>16.2f} {con_audio / con_wall:>16.2f} "
                  f"{(con_audio / con_wall) / (seq_audio / seq_wall):>8.2f}x")
    finally:
        stop_server(app, server)


if __name__ == "__main__":
    main()
