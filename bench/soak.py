#!/usr/bin/env python3
"""Hours of mixed traffic against one server: does its resident memory settle, and does it stay up?

    .venv/bin/python bench/soak.py                          # an hour, 4 clients, full-size Spanish Pocket TTS
    .venv/bin/python bench/soak.py --minutes 10 --clients 4
    .venv/bin/python bench/soak.py --minutes 10 --env MALLOC_ARENA_MAX=0   # glibc's default arenas, to compare

The server (`tts_server.py`, in its own process, its audio cache on as shipped) runs the full-size
random-weight Spanish Pocket TTS and Wyoming. Each client, in a loop with a short pause, picks a
surface at random (the eight of tests/protocols/surfaces.py: /tts, /tts/stream, OpenAI's speech,
Kyutai's POST and WebSocket, the JSON WebSocket, Wyoming whole and streamed) and either has a
short answer spoken (70%), leaves mid-answer (20%) or sends a bad request (10%: no text, an unknown
voice, broken JSON). The server's resident memory is read every 10 s. Prints the requests by
outcome, any 5xx, and the memory at start, after the warm-up, at the end and its slope after
the warm-up (MB per hour).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import threading
import time

import requests

from pocket_peers import MODELS, ROOT, build, free_port, memory_mb, wait_http

sys.path.insert(0, str(ROOT / "tests" / "protocols"))
from surfaces import SURFACES  # noqa: E402

TEXTS = ["Hola, ¿en qué puedo ayudarte hoy?", "El tren sale a las ocho y media.",
         "Mañana lloverá por la tarde, lleva un paraguas.", "Claro, te lo explico en dos pasos.",
         "La reunión es el jueves en la sala grande.", "Gracias por tu paciencia."]
LONG = " ".join(TEXTS)


def client(surfaces: list, stop: threading.Event, seed: int, tally: collections.Counter, lock: threading.Lock,
           base: str) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        surface = rng.choice(surfaces)
        roll = rng.random()
        try:
            if roll < 0.7:
                verdict = surface.speak(rng.choice(TEXTS), "es", None)
                outcome = f"{verdict.outcome} {verdict.signal}"
            elif roll < 0.9:
                surface.leave(LONG, "es")
                outcome = "left mid-answer"
            else:
                outcome = bad_request(surface, base, rng)
        except Exception as exc:  # a broken connection or an assertion of the surface's client
            outcome = f"client error {type(exc).__name__}"
        with lock:
            tally[(surface.name, outcome)] += 1
        stop.wait(rng.uniform(0.2, 1.0))


def bad_request(surface, base: str, rng: random.Random) -> str:
    kind = rng.choice(("no text", "unknown voice", "broken JSON"))
    if kind == "broken JSON":
        response = requests.post(f"{base}/tts", data=b'{"text": "hola', timeout=30,
                                 headers={"Content-Type": "application/json"})
        return f"bad request {response.status_code}"
    verdict = surface.speak("" if kind == "no text" else "hola", "es", None if kind == "no text" else "nadie")
    return f"bad request {verdict.outcome} {verdict.signal}"


def server_failure(outcome: str) -> bool:
    """An HTTP 5xx but 503 (busy, loading: honest), a WebSocket closed as an internal error (1011),
    a Wyoming `internal` error."""
    return any(word in ("internal", "1011") or (word.isdigit() and 500 <= int(word) <= 599 and word != "503")
               for word in outcome.split())


def busy(outcome: str) -> bool:
    return any(word in ("503", "1013", "busy") for word in outcome.split())


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600 if var else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=None, help="minutes (default: a sixth of the run)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server, repeatable")
    args = parser.parse_args()
    warmup = 60 * (args.warmup if args.warmup is not None else args.minutes / 6)
    config, voice = build(MODELS)
    port, wyoming_port = free_port(), free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "TTS_DEVICE": "cpu",
           "TTS_POCKET_CONFIG": str(config), "TTS_POCKET_LANGUAGES": "es", "TTS_ROUTES": "es=pocket",
           "TTS_DEFAULT_LANGUAGE": "es", "TTS_VOICE_DIR": str(voice.parent), "TTS_POCKET_VOICE": voice.stem,
           "TTS_RATE_LIMIT": "", "TTS_LOG_FILE": "", "TTS_LOG_LEVEL": "warning",
           "TTS_WYOMING_PORT": str(wyoming_port), "TTS_WYOMING_HOST": "127.0.0.1",
           # Random weights never say "end of speech": answers are cut at 3 s, as short replies are.
           "TTS_MAX_AUDIO_SECONDS": "3"}
    env.update(dict(item.split("=", 1) for item in args.env))
    server = subprocess.Popen([sys.executable, str(ROOT / "tts_server.py")], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", server)
        time.sleep(1)
        started = memory_mb(server.pid)["VmRSS"]
        surfaces = [cls(base, wyoming_port) for cls in SURFACES]
        stop, lock, tally = threading.Event(), threading.Lock(), collections.Counter()
        threads = [threading.Thread(target=client, args=(surfaces, stop, seed, tally, lock, base), daemon=True)
                   for seed in range(args.clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        samples: list[tuple[float, float]] = []
        while time.monotonic() - began < 60 * args.minutes:
            time.sleep(10)
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}")
            samples.append((time.monotonic() - began, memory_mb(server.pid)["VmRSS"]))
            print(f"{samples[-1][0] / 60:5.1f} min  {samples[-1][1]:7.0f} MB  {sum(tally.values())} requests",
                  flush=True)
        stop.set()
        for thread in threads:
            thread.join(200)
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=60)
    settled = [(t, m) for t, m in samples if t >= warmup]
    at_warmup = settled[0][1] if settled else float("nan")
    print(f"\n{args.minutes:g} minutes, {args.clients} clients, server settings {args.env or 'as shipped'}")
    for (surface, outcome), count in sorted(tally.items()):
        print(f"  {count:6d}  {surface}: {outcome}")
    failures = sum(count for (_, outcome), count in tally.items() if server_failure(outcome))
    print(f"requests: {sum(tally.values())}; server failures (HTTP 5xx but 503, WebSocket 1011, `internal`): "
          f"{failures}; told busy (503, 1013, `busy`): {sum(c for (_, o), c in tally.items() if busy(o))}; "
          f"client errors: "
          f"{sum(c for (_, o), c in tally.items() if o.startswith('client error'))}")
    print(f"resident memory: {started:.0f} MB at start, {at_warmup:.0f} MB after {warmup / 60:.0f} min of warm-up, "
          f"{samples[-1][1]:.0f} MB at the end, {max(m for _, m in samples):.0f} MB at most; "
          f"after the warm-up {slope_mb_per_hour(settled):+.0f} MB per hour")
    tracebacks = errors.count("Traceback")
    print(f"tracebacks in the server's log: {tracebacks}")


if __name__ == "__main__":
    main()
