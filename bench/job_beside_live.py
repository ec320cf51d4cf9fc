#!/usr/bin/env python3
"""A live /tts/stream's first audio with no job running, and with a long-text job running beside it.

    .venv/bin/python bench/job_beside_live.py            # the full-size Spanish Pocket TTS (random weights)
    .venv/bin/python bench/job_beside_live.py --tiny     # the tests' tiny models: seconds, for a quick look

One service, the cache off, real-time admission on (TTS_REALTIME_MARGIN's default). Runs alternate:
a stream alone, then a stream while a job of many pieces runs (its pieces are background work,
admitted only into rows live requests leave). It prints the median first audio of each, their ratio
(target: at most 1.5x) and each stream's pre-buffer: how far behind real time its audio ever came,
counted from its first byte, which a player must hold to play it without a gap (target: <= 0.3 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import requests

from common import start_server, stop_server
from first_byte import TEXT, pocket_env

BOOK = "\n\n".join(f"# Capítulo {n}\n" + " ".join(f"Esta es la frase {m} del capítulo {n}." for m in range(1, 7))
                   for n in range(1, 40))
RATE = 24000


def live(base: str) -> tuple[float, float]:
    """(seconds to the first audio, pre-buffer in seconds) of one /tts/stream in raw PCM."""
    started = time.perf_counter()
    first = None
    samples = 0
    late = 0.0
    with requests.post(f"{base}/tts/stream", json={"text": TEXT, "format": "pcm"}, stream=True,
                       timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=None):
            now = time.perf_counter()
            if first is None:
                first = now
            late = max(late, (now - first) - samples / RATE)  # this chunk should already be playing
            samples += len(chunk) // 2
    return (first or time.perf_counter()) - started, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny models instead of the full size")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="bench-jobs-")
    base, app, server = start_server({**pocket_env(args.tiny), "TTS_JOB_STORE": store})
    alone: list[tuple[float, float]] = []
    beside: list[tuple[float, float]] = []
    job_pieces = []
    try:
        live(base)  # warm up
        for _ in range(args.repeat):
            alone.append(live(base))
            job = requests.post(f"{base}/v1/audio/jobs", json={"text": BOOK, "format": "wav"}, timeout=60).json()
            url = f"{base}/v1/audio/jobs/{job['id']}"
            while requests.get(url, timeout=30).json()["progress"]["pieces_done"] < 1:  # its pieces are running
                time.sleep(0.05)
            beside.append(live(base))
            job_pieces.append(requests.get(url, timeout=30).json()["progress"]["pieces_done"])
            requests.delete(url, timeout=30)
            time.sleep(0.5)  # the engine's rows free again before the next stream alone
    finally:
        stop_server(app, server)
    first_alone = statistics.median(first for first, _ in alone)
    first_beside = statistics.median(first for first, _ in beside)
    print(f"\n{'tiny' if args.tiny else 'full-size'} Spanish Pocket TTS, {len(TEXT)} characters live, "
          f"{args.repeat} runs each, medians\n")
    print("| live /tts/stream | first audio | pre-buffer (worst) |")
    print("|---|---:|---:|")
    print(f"| no job | {first_alone * 1000:.0f} ms | {max(late for _, late in alone):.3f} s |")
    print(f"| a job running | {first_beside * 1000:.0f} ms | {max(late for _, late in beside):.3f} s |")
    print(f"\nfirst audio with a job / without: {first_beside / first_alone:.2f}x (target <= 1.5x); "
          f"the job made {statistics.median(job_pieces):.0f} pieces meanwhile (median)")


if __name__ == "__main__":
    main()
