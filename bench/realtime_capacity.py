#!/usr/bin/env python3
"""N listeners streaming Spanish answers at once: does every started stream stay real time?

    .venv/bin/python bench/realtime_capacity.py                       # margins 0 and 1.25, 4 to 16 clients
    .venv/bin/python bench/realtime_capacity.py --clients 8,12 --margins 1.25

The full-size random-weight Spanish Pocket TTS (built once into models/bench/pocket-full), the
service in this process, the cache off. N clients post a different answer each to `/tts/stream`
at once and read it as a player would. Per N and `TTS_REALTIME_MARGIN`, side by side in one run:
audio seconds made per wall second, median and worst first audio, and the pre-buffer the worst
stream needs so that its playback never runs dry after its first byte (0.3 s or less counts as
real time). Margin 0 admits every request into the batch at once; 1.25 admits a request only
while every row stays 1.25 times faster than real time, and the others wait in arrival order.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time

import requests

from common import start_server, stop_server
from first_byte import pocket_env
from pocket_peers import SUBJECTS

RATE = 24000


def answer(i: int) -> str:
    return f"{SUBJECTS[i % len(SUBJECTS)]}, número {i + 1}, tiene una historia larga que contar hoy."


def listen(base: str, text: str) -> dict:
    start = time.perf_counter()
    arrivals = []
    received = 0
    with requests.post(f"{base}/tts/stream", json={"text": text, "format": "pcm"}, stream=True,
                       timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=None):
            arrivals.append((time.perf_counter() - start, received / 2 / RATE))
            received += len(chunk)
    first = arrivals[0][0]
    prebuffer = max(max(at - first - played for at, played in arrivals), 0.0)
    return {"first": first, "audio": received / 2 / RATE, "prebuffer": prebuffer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="4,8,12,16")
    parser.add_argument("--margins", default="0,1.25")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model (a dry run)")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    rows = []
    for margin in [float(m) for m in args.margins.split(",")]:
        env = {**pocket_env(args.tiny), "TTS_REALTIME_MARGIN": str(margin),
               "TTS_MAX_BATCH_SIZE": str(max(counts)), "TTS_MAX_QUEUE": str(4 * max(counts))}
        base, app, server = start_server(env)
        try:
            listen(base, "Un momento.")  # the first step's cost is measured before the crowd comes
            for n in counts:
                began = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(n) as pool:
                    runs = list(pool.map(lambda i: listen(base, answer(i)), range(n)))
                wall = time.perf_counter() - began
                firsts = [r["first"] for r in runs]
                worst = max(r["prebuffer"] for r in runs)
                rows.append((margin, n, sum(r["audio"] for r in runs) / wall, statistics.median(firsts),
                             max(firsts), worst, sum(r["audio"] for r in runs) / n))
                print(f"margin {margin:g}, {n} clients: done", flush=True)
        finally:
            stop_server(app, server)
    print(f"\n{'tiny' if args.tiny else 'full-size'} Spanish Pocket TTS, /tts/stream, every client at once\n")
    print("| TTS_REALTIME_MARGIN | clients | audio s per wall s | median first audio | worst first audio | "
          "worst pre-buffer | every stream real time | audio per stream |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for margin, n, rate, median_first, worst_first, worst, per_stream in rows:
        print(f"| {margin:g} | {n} | {rate:.2f} | {median_first:.2f} s | {worst_first:.2f} s | {worst:.2f} s | "
              f"{'yes' if worst <= 0.3 else 'no'} | {per_stream:.1f} s |")


if __name__ == "__main__":
    main()
