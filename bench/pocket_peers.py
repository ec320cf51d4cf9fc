#!/usr/bin/env python3
"""Pocket TTS side by side: the package called directly, `pocket-tts serve` (with and without
--quantize) and this service, on the same full-size random weights and the same texts.

    .venv/bin/python bench/pocket_peers.py                  # 1 and 4 clients, 2 texts per client
    .venv/bin/python bench/pocket_peers.py --per-client 3 --clients 1,4,8
    TTS_TORCH_THREADS=1 .venv/bin/python bench/pocket_peers.py --only service   # a setting, alone

The model is the Spanish config's full size (109.5M parameters) with random weights, built once
by scripts/tiny_pocket.py's `build_full_pocket` into models/bench/pocket-full. Random weights
never say "end of speech", so every system speaks each text for the package's own maximum
length (tokens / 3 + 2 seconds): the audio is the same length everywhere. Every request has its
own text and the service runs with its audio cache off. Prints audio seconds per wall second,
median and worst time to the first audio byte, the service's resident memory, and the ratios the
targets are written in.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
MODELS = ROOT / "models" / "bench" / "pocket-full"
VENV_BIN = Path(sys.executable).parent
RATE = 24000

SUBJECTS = ["El tren de la mañana", "La biblioteca del barrio", "Mi abuela", "El mercado central",
            "La profesora de música", "Un perro pequeño", "El río", "La panadería de la esquina",
            "El equipo de fútbol", "La luna llena", "Un viejo reloj", "La playa del norte",
            "El jardín botánico", "Mi vecino", "La tormenta", "El museo de ciencias"]


def texts(count: int) -> list[str]:
    """Distinct sentences of about the same length, so no answer can come from a cache."""
    return [f"{SUBJECTS[i % len(SUBJECTS)]}, número {i + 1}." for i in range(count)]


def build(out: Path) -> tuple[Path, Path]:
    from tiny_pocket import build_full_pocket, voice_wav

    config = out / "es.yaml"
    voice = out / "voices" / "bench-es.wav"
    if not config.exists():
        build_full_pocket(out, language="es")
    if not voice.exists():
        voice.parent.mkdir(parents=True, exist_ok=True)
        voice_wav(voice)
    return config, voice


def wait_http(url: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory (VmRSS) and its private part (RssAnon; the rest is shared library pages)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def streamed(response: requests.Response, header: int, start: float) -> tuple[float, float]:
    """(audio seconds, seconds to the first audio byte) of a streamed 16-bit mono answer."""
    response.raise_for_status()
    received, first = 0, None
    for chunk in response.iter_content(chunk_size=None):
        received += len(chunk)
        if first is None and received > header:
            first = time.perf_counter() - start
    return (received - header) / 2 / RATE, first if first is not None else float("nan")


def peer_call(base: str):
    def call(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        with requests.post(f"{base}/tts", data={"text": text}, stream=True, timeout=600) as response:
            return streamed(response, 44, start)
    return call


def service_call(base: str):
    def call(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        with requests.post(f"{base}/tts/stream", json={"text": text, "language": "es", "format": "pcm"},
                           stream=True, timeout=600) as response:
            return streamed(response, 0, start)
    return call


def measure(call, clients: int, per_client: int, offset: int) -> dict:
    batches = [texts(offset + clients * per_client)[offset + c * per_client: offset + (c + 1) * per_client]
               for c in range(clients)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(lambda batch: [call(t) for t in batch], batches) for r in rs]
    wall = time.perf_counter() - start
    firsts = [first for _, first in results]
    return {"x_rt": sum(audio for audio, _ in results) / wall, "median_first": statistics.median(firsts),
            "worst_first": max(firsts)}


def direct(config: Path, voice: Path, quantize: bool, per_client: int) -> dict:
    """The package in this process, one request at a time, as its README shows."""
    from pocket_tts import TTSModel

    model = TTSModel.load_model(config=str(config), quantize=quantize)
    state = model.get_state_for_audio_prompt(voice)

    def call(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        first, samples = None, 0
        for chunk in model.generate_audio_stream(state, text):
            if first is None:
                first = time.perf_counter() - start
            samples += chunk.shape[-1]
        return samples / RATE, first

    call("Calentando.")
    return measure(call, 1, per_client, offset=500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=MODELS)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--only", choices=("service",), help="measure this service alone (no ratios)")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    config, voice = build(args.models)
    print(f"model: {config} (full size, random weights); {len(os.sched_getaffinity(0))} CPU cores")

    rows: dict[str, dict[int, dict]] = {}
    for quantize in (False, True) if not args.only else ():
        name = "package directly" + (" (int8)" if quantize else "")
        rows[name] = {1: direct(config, voice, quantize, args.per_client)}
        print(name, rows[name], flush=True)

    def run_server(name: str, command: list[str], env: dict, health: str, call) -> dict[str, float]:
        port = free_port()
        env = {**os.environ, **env, "PORT": str(port)}
        process = subprocess.Popen([part.replace("{port}", str(port)) for part in command], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + health, process)
            resident = memory_mb(process.pid)
            call(base)("Calentando.")
            rows[name] = {}
            for index, clients in enumerate(counts):
                rows[name][clients] = measure(call(base), clients, args.per_client, offset=100 * (index + 1))
                print(name, clients, rows[name][clients], flush=True)
            return resident
        finally:
            process.terminate()
            process.wait(60)

    serve = [str(VENV_BIN / "pocket-tts"), "serve", "--host", "127.0.0.1", "--port", "{port}",
             "--config", str(config), "--default-voice", str(voice)]
    if not args.only:
        run_server("pocket-tts serve", serve, {}, "/health", peer_call)
        run_server("pocket-tts serve --quantize", serve + ["--quantize"], {}, "/health", peer_call)
    service_env = {"HOST": "127.0.0.1", "TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(config),
                   "TTS_VOICE_DIR": str(voice.parent), "TTS_POCKET_VOICE": voice.stem, "TTS_CACHE_BYTES": "0",
                   "TTS_RATE_LIMIT": "", "TTS_LOG_FILE": "", "TTS_LOG_LEVEL": "warning",
                   "TTS_MAX_BATCH_SIZE": str(max(counts))}
    resident = run_server("this service", [sys.executable, str(ROOT / "tts_server.py")], service_env, "/health",
                          service_call)

    print()
    print(f"| | {' | '.join(f'{c} client(s): audio s / wall s | median / worst first audio' for c in counts)} |")
    print("|---|" + "---:|---:|" * len(counts))
    for name, by_clients in rows.items():
        cells = []
        for clients in counts:
            row = by_clients.get(clients)
            cells += [f"{row['x_rt']:.2f}", f"{row['median_first']:.2f} s / {row['worst_first']:.2f} s"] if row \
                else ["", ""]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nthis service's resident memory after start (default languages es and en loaded): "
          f"{resident['VmRSS']:.0f} MB (private {resident['RssAnon']:.0f} MB, "
          f"shared libraries {resident['RssFile']:.0f} MB)")
    if args.only:
        return
    ours, peer = rows["this service"], rows["pocket-tts serve --quantize"]
    best_serve = max(rows[n][1]["x_rt"] for n in rows if n.startswith("pocket-tts serve"))
    best_direct = max(rows[n][1]["x_rt"] for n in rows if n.startswith("package directly"))
    print(f"1 client: service throughput / best `pocket-tts serve` = {ours[1]['x_rt'] / best_serve:.2f} "
          f"(target >= 0.9); / the package called directly at its best = {ours[1]['x_rt'] / best_direct:.2f}")
    many = max(counts)
    if many > 1:
        print(f"{many} clients: service throughput / `serve --quantize` = "
              f"{ours[many]['x_rt'] / peer[many]['x_rt']:.2f} (target >= 2)")
        print(f"{many} clients: service median first audio / its single-client figure = "
              f"{ours[many]['median_first'] / ours[1]['median_first']:.2f} (target <= 1.5); "
              f"/ `serve --quantize`'s = {ours[many]['median_first'] / peer[many]['median_first']:.2f} "
              f"(target <= 1)")


if __name__ == "__main__":
    main()
