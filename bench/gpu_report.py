#!/usr/bin/env python3
"""The service on one CUDA device: does every path speak there, and how many streams stay real time.

    .venv/bin/python bench/gpu_report.py                 # on a machine with a CUDA device
    .venv/bin/python bench/gpu_report.py --device cpu --tiny-only --clients 1,2   # a dry run here

1. **Speaks on CUDA** (the tests' tiny models, DSM on the device, Pocket TTS on the CPU as always):
   `/tts` in English (with word times) and Spanish, `/tts/stream`, the JSON WebSocket, and eight
   `/tts` at once; each answer decoded and checked (24 kHz, long enough, not silence).
2. **DSM at full size** (random weights made by scripts/make_tiny_models.py --full; the compute per
   step does not depend on the values): N clients stream `/tts/stream` at once, each a different
   text cut at `--seconds` of audio (random weights never stop by themselves), for N in
   `--clients`. Per N: audio seconds made per wall second, median and worst first audio, and the
   pre-buffer the worst stream needs so that playback never runs dry after its first byte. A
   stream is real time when that pre-buffer is at most 0.3 s; the capacity is the largest N whose
   every stream is.
3. **Pocket TTS at full size on this machine's CPU** (where it always runs): the same crowds on
   the Spanish model through `/tts/stream` at the default `TTS_REALTIME_MARGIN`, answers cut at
   `--seconds`, for N in `--pocket-clients`: audio seconds per wall second, first audio, the worst
   pre-buffer and the rows the engine held (bench/realtime_capacity.py's measurement).

Prints one table per part and a line of figures to copy into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from common import ROOT, start_server, stop_server

RATE = 24000
SUBJECTS = ["The morning train", "The old library", "My grandmother", "The central market", "The music teacher",
            "A small dog", "The river", "The corner bakery", "The football team", "The full moon", "An old clock",
            "The north beach", "The botanical garden", "My neighbour", "The storm", "The science museum"]


def texts(count: int) -> list[str]:
    return [f"{SUBJECTS[i % len(SUBJECTS)]}, number {i + 1}, tells a long story about the day it had."
            for i in range(count)]


def build(out: Path, full: bool) -> dict[str, str]:
    args = [sys.executable, str(ROOT / "scripts" / "make_tiny_models.py"), str(out)] + (["--full"] if full else [])
    if not (out / "env").exists() or (full and not (out / "dsm-full" / "config.json").exists()):
        subprocess.run(args, check=True)
    return dict(line.split("=", 1) for line in (out / "env").read_text().split())


def speech(data: bytes, header: int = 0) -> np.ndarray:
    return np.frombuffer(data[header:], dtype="<i2").astype(np.float32) / 32768


def check(name: str, samples: np.ndarray, rate: int = RATE, least: float = 0.3) -> bool:
    seconds = len(samples) / rate
    loud = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
    ok = rate == RATE and seconds >= least and loud > 1e-3
    print(f"| {name} | {'ok' if ok else 'FAILED'} | {seconds:.2f} s | rms {loud:.3f} |")
    return ok


def speaks_everywhere(models: Path, device: str) -> bool:
    import base64
    import io

    import soundfile as sf
    from websockets.sync.client import connect

    env = build(models, full=False)
    env.update({"TTS_DEVICE": device, "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
                "TTS_DEFAULT_LANGUAGE": "es", "TTS_CACHE_BYTES": "0", "TTS_RATE_LIMIT": ""})
    base, app, server = start_server(env)
    results = []
    try:
        health = requests.get(f"{base}/health", timeout=30).json()
        print(f"\nhealth: {json.dumps(health.get('engines', health))[:400]}\n")
        print("| path | verdict | audio | loudness |\n|---|---|---:|---:|")
        for language, text in (("en", "Hello there, this is a test on the graphics card."),
                               ("es", "Hola, esta es una prueba en la tarjeta gráfica.")):
            body = requests.post(f"{base}/tts", json={"text": text, "language": language, "words": True},
                                 timeout=120).json()
            samples, rate = sf.read(io.BytesIO(base64.b64decode(body["audioContent"])), dtype="float32")
            results.append(check(f"/tts {language} ({body['provider']})", samples, rate))
            if language == "en":
                words = body.get("words", [])
                ordered = all(a["start"] <= b["start"] for a, b in zip(words, words[1:]))
                results.append(bool(words) and ordered)
                print(f"| /tts en word times | {'ok' if words and ordered else 'FAILED'} | {len(words)} words | |")
        response = requests.post(f"{base}/tts/stream", json={"text": "Streaming on the device.", "language": "en",
                                                              "format": "pcm"}, timeout=120)
        results.append(check("/tts/stream en pcm", speech(response.content)))
        with connect(base.replace("http://", "ws://") + "/ws/tts?language=en", open_timeout=60) as ws:
            for word in "Words arrive one by one from the model .".split():
                ws.send(json.dumps({"type": "text", "text": word + " "}))
            ws.send(json.dumps({"type": "end"}))
            pcm, events = b"", []
            while not events or events[-1].get("type") not in ("done", "error"):
                message = ws.recv(timeout=120)
                if isinstance(message, bytes):
                    pcm += message
                else:
                    events.append(json.loads(message))
        results.append(check(f"/ws/tts en ({sum(e['type'] == 'word' for e in events)} words)", speech(pcm)))

        def one(i: int) -> np.ndarray:
            body = requests.post(f"{base}/tts", json={"text": texts(8)[i], "language": "en"}, timeout=300).json()
            return sf.read(io.BytesIO(base64.b64decode(body["audioContent"])), dtype="float32")[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
        results.append(all(check(f"8 at once, #{i + 1}", a) for i, a in enumerate(answers)))
    finally:
        stop_server(app, server)
    return all(results)


def stream(base: str, text: str) -> dict:
    start = time.perf_counter()
    arrivals = []
    with requests.post(f"{base}/tts/stream", json={"text": text, "language": "en", "format": "pcm"},
                       stream=True, timeout=600) as response:
        response.raise_for_status()
        received = 0
        for chunk in response.iter_content(chunk_size=None):
            arrivals.append((time.perf_counter() - start, received / 2 / RATE))
            received += len(chunk)
    first = arrivals[0][0]
    # Playback starts at the first byte plus the pre-buffer; chunk k must arrive before its audio plays.
    prebuffer = max(max(at - first - played for at, played in arrivals), 0.0)
    return {"first": first, "audio": received / 2 / RATE, "end": time.perf_counter() - start,
            "prebuffer": prebuffer}


def dsm_capacity(models: Path, device: str, counts: list[int], seconds: float, full: bool = True) -> None:
    env = build(models, full=full)
    env.update({"TTS_DEVICE": device, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "",
                "TTS_DEFAULT_LANGUAGE": "en", "TTS_CACHE_BYTES": "0", "TTS_RATE_LIMIT": "",
                "TTS_MAX_BATCH_SIZE": str(max(counts)),
                "TTS_MAX_AUDIO_SECONDS": str(seconds), "TTS_MAX_QUEUE": str(4 * max(counts)),
                "TTS_SESSION_SLOT_SHARE": "1.0"})
    if full:
        env["TTS_DSM_MODEL"] = str(models / "dsm-full")
        env["TTS_DSM_VOICE"] = next(str(p) for p in (models / "dsm-full" / "voices").glob("*.safetensors"))
    start = time.perf_counter()
    base, app, server = start_server(env)
    print(f"\n{'full-size' if full else 'tiny'} DSM loaded in {time.perf_counter() - start:.1f} s on {device}")
    try:
        stream(base, "Warming up the model once.")
        print("\n| clients | audio s per wall s | median first audio | worst first audio | worst pre-buffer | real time |")
        print("|---:|---:|---:|---:|---:|---|")
        capacity = 0
        figures = []
        for n in counts:
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                runs = list(pool.map(lambda t: stream(base, t), texts(n)))
            wall = time.perf_counter() - began
            made = sum(r["audio"] for r in runs) / wall
            firsts = [r["first"] for r in runs]
            worst = max(r["prebuffer"] for r in runs)
            real_time = worst <= 0.3
            capacity = n if real_time else capacity
            figures.append(f"{n}: {made:.1f}x, first {statistics.median(firsts):.2f} s, pre-buffer {worst:.2f} s")
            print(f"| {n} | {made:.1f} | {statistics.median(firsts):.2f} s | {max(firsts):.2f} s | {worst:.2f} s | "
                  f"{'yes' if real_time else 'no'} |")
        print(f"\nreal-time capacity: {capacity} streams at once ({seconds:g} s of audio each)")
        print("figures: " + "; ".join(figures))
    finally:
        stop_server(app, server)


def pocket_capacity(counts: list[int], seconds: float) -> None:
    import os

    from pocket_peers import MODELS
    from pocket_peers import build as build_pocket
    from realtime_capacity import REAL_TIME_PREBUFFER, TOGETHER_FIRST_AUDIO, crowds, served, service_env

    config, voice = build_pocket(MODELS)
    env = {**service_env(config, voice, 1.25, max(counts)), "TTS_MAX_AUDIO_SECONDS": str(seconds)}
    print(f"\nfull-size Spanish Pocket TTS on this machine's CPU ({len(os.sched_getaffinity(0))} cores), "
          f"answers cut at {seconds:g} s")
    rows = served([sys.executable, str(ROOT / "tts_server.py")], env, "/health", lambda base: crowds(base, counts))
    print("\n| clients | audio s per wall s | median first audio | worst first audio | worst pre-buffer | "
          "real time | rows held (mean / most) |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    for n, rate, median_first, worst_first, worst, _, held in rows:
        print(f"| {n} | {rate:.1f} | {median_first:.2f} s | {worst_first:.2f} s | {worst:.2f} s | "
              f"{'yes' if worst <= REAL_TIME_PREBUFFER else 'no'} | {held} |")
    together = [n for n, _, _, worst_first, worst, _, _ in rows
                if worst_first <= TOGETHER_FIRST_AUDIO and worst <= REAL_TIME_PREBUFFER]
    print(f"\nPocket TTS streams that start together (first audio within {TOGETHER_FIRST_AUDIO:g} s) and stay real time: "
          f"{max(together, default=0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", type=Path, default=None, help="where to build the models (default: a temp dir)")
    parser.add_argument("--clients", default="1,8,16,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream in the capacity runs")
    parser.add_argument("--pocket-clients", default="1,8,16", help="part 3; empty to leave it out")
    parser.add_argument("--tiny-only", action="store_true", help="only part 1")
    parser.add_argument("--capacity-only", action="store_true", help="only parts 2 and 3")
    parser.add_argument("--tiny-capacity", action="store_true", help="part 2 on the tiny DSM (a dry run)")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        import torch

        assert torch.cuda.is_available(), "no CUDA device: use --device cpu for a dry run"
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    models = args.models or Path(tempfile.mkdtemp(prefix="gpu-report-"))
    began = time.perf_counter()
    ok = True
    if not args.capacity_only:
        ok = speaks_everywhere(models, args.device)
        print(f"\nevery path speaks on {args.device}: {'yes' if ok else 'NO'} ({time.perf_counter() - began:.0f} s)")
    if not args.tiny_only:
        dsm_capacity(models, args.device, [int(n) for n in args.clients.split(",")], args.seconds,
                     full=not args.tiny_capacity)
        if args.pocket_clients:
            pocket_capacity([int(n) for n in args.pocket_clients.split(",")], args.seconds)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
