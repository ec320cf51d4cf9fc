#!/usr/bin/env python3
"""Throughput through nginx with one and with two replicas, and first audio through nginx vs direct.

    .venv/bin/python bench/replicas.py              # tiny random-weight DSM
    .venv/bin/python bench/replicas.py --full       # full-size random-weight DSM (slow on a CPU)

Runs Debian's nginx with the shipped deploy/nginx/ config (rendered as tests/system/test_nginx.py does)
in front of real gunicorn replicas, all on loopback, and prints, measured in this run:
- audio seconds generated per wall second at --clients concurrent /tts clients through nginx,
  with one replica and with two (alternating rounds, so both see the same machine), and their ratio;
- the time to the first audio byte of /tts/stream through nginx against the same replica asked
  directly (medians over --repeat requests, alternating).
The single replica gets every core; the two replicas get half each (OMP_NUM_THREADS), as one
replica per GPU splits the GPUs. On one machine's CPU the two compete for the same cores, so the
ratio shows what splitting costs or gains there, not what a second GPU or VM adds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from common import ROOT, model_env

sys.path.insert(0, str(ROOT / "tests"))
from nginx_helpers import NGINX, nginx_front, self_signed_cert, start_replica, wait_ready  # noqa: E402

TEXT = "Serve many users together, and let each one hear their own words."


def synthesize(base: str, text: str) -> float:
    response = requests.post(f"{base}/tts", json={"text": text, "language": "en"}, timeout=600)
    response.raise_for_status()
    return response.json()["duration"]


def throughput(base: str, clients: int) -> tuple[float, float]:
    """Audio seconds generated and wall seconds taken by `clients` concurrent requests."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        audio = sum(pool.map(lambda _: synthesize(base, TEXT), range(clients)))
    return audio, time.perf_counter() - start


def first_audio(base: str) -> float:
    start = time.perf_counter()
    with requests.post(f"{base}/tts/stream", json={"text": TEXT, "language": "en"}, stream=True,
                       timeout=600) as response:
        response.raise_for_status()
        received = 0
        for chunk in response.iter_content(chunk_size=None):
            received += len(chunk)
            if received > 44:  # past the WAV header
                return time.perf_counter() - start
    raise RuntimeError("the stream ended without audio")


def replica(env: dict[str, str], tmp: Path, name: str, threads: int):
    return start_replica(env, tmp, name, OMP_NUM_THREADS=str(threads), TTS_CACHE_BYTES="0",
                         TTS_DSM_TEMPERATURE="0", TTS_MAX_BATCH_SIZE="8", TTS_REQUEST_TIMEOUT="900")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size random-weight DSM")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each layout")
    parser.add_argument("--repeat", type=int, default=5, help="streams for the first-audio medians")
    args = parser.parse_args()
    if NGINX is None:
        sys.exit("nginx is not installed: sudo apt-get install -y nginx-light (or nginx)")
    env = model_env(args.full)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        cert, key = self_signed_cert(tmp)
        # All three replicas stay up; an idle one costs no compute, so the layouts can alternate.
        alone = replica(env, tmp, "alone", cores)
        pair = [replica(env, tmp, f"pair-{i}", max(1, cores // 2)) for i in range(2)]
        for started in [alone, *pair]:
            stack.callback(started.stop)
        for started in [alone, *pair]:
            wait_ready(started, timeout=900)
            synthesize(started.base, "Warm up.")
        one = stack.enter_context(nginx_front(tmp / "nginx-one", [alone.address], cert, key))
        two = stack.enter_context(nginx_front(tmp / "nginx-two", [r.address for r in pair], cert, key))
        totals = {"one": [0.0, 0.0], "two": [0.0, 0.0]}
        for round_ in range(args.rounds):
            for name, front in ([("one", one), ("two", two)] if round_ % 2 == 0 else [("two", two), ("one", one)]):
                audio, wall = throughput(front.http, args.clients)
                totals[name][0] += audio
                totals[name][1] += wall
        proxied, direct = [], []
        for _ in range(args.repeat):
            proxied.append(first_audio(one.http))
            direct.append(first_audio(alone.base))
    single, double = (totals[name][0] / totals[name][1] for name in ("one", "two"))
    print(f"{cores} CPU cores, {'full-size' if args.full else 'tiny'} random-weight DSM, "
          f"{args.clients} concurrent /tts clients, {args.rounds} alternating rounds")
    print(f"{'through nginx':<28} {'audio s / wall s':>17}")
    print(f"{'one replica':<28} {single:>17.2f}")
    print(f"{'two replicas':<28} {double:>17.2f}")
    print(f"two replicas / one: {double / single:.2f}x")
    p, d = statistics.median(proxied), statistics.median(direct)
    print(f"first audio of /tts/stream (median of {args.repeat}): through nginx {p * 1000:.0f} ms, "
          f"direct {d * 1000:.0f} ms, ratio {p / d:.2f}x ({(p - d) * 1000:+.0f} ms)")


if __name__ == "__main__":
    main()
