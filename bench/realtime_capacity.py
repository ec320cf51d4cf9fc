#!/usr/bin/env python3
"""N listeners streaming Spanish answers at once: does every started stream stay real time?

    .venv/bin/python bench/realtime_capacity.py                        # 1 to 32 clients, the peer beside
    .venv/bin/python bench/realtime_capacity.py --clients 8,12 --margins 0,1.25 --no-peer

The full-size random-weight Spanish Pocket TTS (built once into models/bench/pocket-full), each
server in its own process with its audio cache off. N clients post a different answer each at
once and read it as a player would: this service's `/tts/stream` (raw PCM) at each
`TTS_REALTIME_MARGIN`, and `pocket-tts serve --quantize`'s `/tts` (a streamed WAV; it answers one
request at a time) on the same weights. Per server and N, side by side in one run: audio seconds
made per wall second, median and worst first audio, and the pre-buffer the worst stream needs so
that its playback never runs dry after its first byte (0.3 s or less counts as real time).
Margin 0 admits every request into the batch at once; 1.25 admits one only while every row stays
1.25 times faster than real time, and the others wait in arrival order.

Beside them, the limit this CPU sets: the arithmetic of decoding one second of audio with Mimi
(counted by torch's FLOP counter), this machine's float32 and bfloat16 matrix-product rates, and
Mimi's decoder timed on its own with 8 rows (the service's matrix products and the package's
modules in turns); from them, the most audio seconds per wall second the decoder alone could make
with the flow model costing nothing. The targets, as ratios measured in this one run so that they
hold on whichever CPU runs it: the decoder at 0.8x the float32 matmul rate or more; 16 clients at
3x or more the audio seconds per wall second of the peer with one client, every started stream
real time, at least eight rows held; one client at 1.1x or more the peer.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import threading
import time

import requests

from pocket_peers import MODELS, ROOT, SUBJECTS, VENV_BIN, build, free_port, wait_http

RATE = 24000
REAL_TIME_PREBUFFER = 0.3
TOGETHER_FIRST_AUDIO = 1.0  # streams that all hear their first audio within this have started together


def answer(i: int) -> str:
    return f"{SUBJECTS[i % len(SUBJECTS)]}, número {i + 1}, tiene una historia larga que contar hoy."


def listen(url: str, text: str, body: dict, header: int) -> dict:
    """One client: when each chunk came against how much audio had already been played."""
    start = time.perf_counter()
    arrivals = []
    received = 0
    with requests.post(url, stream=True, timeout=900, **body(text)) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=None):
            played = max(received - header, 0) / 2 / RATE
            received += len(chunk)
            if received > header:
                arrivals.append((time.perf_counter() - start, played))
    first = arrivals[0][0]
    prebuffer = max(max(at - first - played for at, played in arrivals), 0.0)
    return {"first": first, "audio": (received - header) / 2 / RATE, "prebuffer": prebuffer}


class Rows(threading.Thread):
    """The rows this service's engine holds while a crowd listens, read from `/health` four times a second."""

    def __init__(self, base: str | None):
        super().__init__(daemon=True)
        self.base, self.seen, self.stop = base, [], threading.Event()

    def run(self) -> None:
        while self.base and not self.stop.wait(0.25):
            try:
                engine = requests.get(self.base + "/health", timeout=5).json()["engines"][0]
            except (requests.RequestException, KeyError, IndexError, ValueError):
                continue
            self.seen.append(engine["active"])

    def summary(self) -> str:
        busy = [rows for rows in self.seen if rows]
        return f"{statistics.mean(busy):.1f} / {max(busy)}" if busy else "-"


def crowd(url: str, body, header: int, n: int, offset: int, health: str | None = None) -> tuple:
    rows = Rows(health)
    rows.start()
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        runs = list(pool.map(lambda i: listen(url, answer(offset + i), body, header), range(n)))
    wall = time.perf_counter() - began
    rows.stop.set()
    rows.join()
    firsts = [r["first"] for r in runs]
    return (n, sum(r["audio"] for r in runs) / wall, statistics.median(firsts), max(firsts),
            max(r["prebuffer"] for r in runs), sum(r["audio"] for r in runs) / n, rows.summary())


def service_env(config, voice, margin: float, most: int) -> dict[str, str]:
    """This service on the full-size Spanish Pocket TTS, room for `most` streams, audio cache off."""
    return {"HOST": "127.0.0.1", "TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(config),
            "TTS_POCKET_LANGUAGES": "es", "TTS_ROUTES": "es=pocket", "TTS_DEFAULT_LANGUAGE": "es",
            "TTS_VOICE_DIR": str(voice.parent), "TTS_POCKET_VOICE": voice.stem, "TTS_CACHE_BYTES": "0",
            "TTS_RATE_LIMIT": "", "TTS_LOG_FILE": "", "TTS_LOG_LEVEL": "warning",
            "TTS_REALTIME_MARGIN": str(margin), "TTS_MAX_BATCH_SIZE": str(most),
            "TTS_MAX_QUEUE": str(4 * most), "TTS_REQUEST_TIMEOUT": "900"}


def crowds(base: str, counts: list[int]) -> list:
    """Each count's crowd in turn on this service's `/tts/stream`, after one short answer."""
    stream = lambda text: {"json": {"text": text, "language": "es", "format": "pcm"}}  # noqa: E731
    listen(f"{base}/tts/stream", "Un momento.", stream, 0)  # the first steps' cost, before the crowd
    return [crowd(f"{base}/tts/stream", stream, 0, n, 100 * index, base) for index, n in enumerate(counts)]


def decoder_limit(config, rows: int = 8, frames: int = 4) -> dict:
    """What Mimi's decoder alone allows on this CPU, with every core: its GFLOP per audio second,
    the machine's float32 and bfloat16 matmul GFLOPS, the decoder's own GFLOPS with `rows` rows
    (the service's matrix products and the package's modules, timed alternately), and the audio
    seconds per wall second each rate would give with the flow model free."""
    import torch
    from pocket_tts import TTSModel
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(ROOT))
    from tts_service.engines.pocket import frames as frame_loop

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = TTSModel.load_model(config=str(config), quantize=True)
    streaming = frame_loop.streaming_modules(model)
    layers = streaming.seanet_layers
    steps = frames * frame_loop.steps_per_latent(model.mimi)
    states = [streaming.mimi_rows.place(streaming.mimi_fresh, 100 * steps) for _ in range(rows)]
    latents = torch.randn(rows, frames, model.flow_lm.ldim)

    def decode(use_layers):
        streaming.seanet_layers = use_layers
        frame_loop.decode_rows(model, streaming, latents, states)

    with torch.no_grad():
        # Counted on the package's modules: the same arithmetic, and torch's counter skips the
        # in-place products (`addmm_`) the matrix-product decoder adds with.
        streaming.seanet_layers = None
        with FlopCounterMode(display=False) as counter:
            frame_loop.decode_rows(model, streaming, latents, states)
        streaming.seanet_layers = layers
        per_audio_second = counter.get_total_flops() / (rows * frames) * model.mimi.frame_rate
        a, b = torch.randn(2048, 512), torch.randn(512, 2048)
        a16, b16 = torch.randn(256, 256).bfloat16(), torch.randn(256, 256).bfloat16()
        # In turns, so that a busy moment of a shared machine falls on none of them alone.
        ours, package, matmul, matmul16 = best_times([lambda: decode(layers), lambda: decode(None),
                                                      lambda: a @ b, lambda: a16 @ b16])
        streaming.seanet_layers = layers
    matmul_rate = 2 * 2048 * 512 * 2048 / matmul
    decoder_rate = counter.get_total_flops() / ours
    return {"gflop_per_audio_second": per_audio_second / 1e9, "matmul_gflops": matmul_rate / 1e9,
            "bf16_matmul_gflops": 2 * 256 ** 3 / matmul16 / 1e9,
            "decoder_gflops": decoder_rate / 1e9, "package_decoder_gflops": counter.get_total_flops() / package / 1e9,
            "at_matmul_rate": matmul_rate / per_audio_second, "at_decoder_rate": decoder_rate / per_audio_second}


def best_times(runs: list, repeat: int = 7, number: int = 3) -> list[float]:
    """For each of `runs`, the fastest of `repeat` means over `number` calls, the runs taking turns
    (so that a busy moment of the machine does not fall on one of them), after one call each."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            for _ in range(number):
                run()
            best[index] = min(best[index], (time.perf_counter() - start) / number)
    return best


def served(command: list[str], env: dict, health: str, run) -> list:
    port = free_port()
    process = subprocess.Popen([part.replace("{port}", str(port)) for part in command],
                               env={**os.environ, **env, "PORT": str(port)}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + health, process)
        return run(base)
    finally:
        process.terminate()
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,8,12,16,24,32")
    parser.add_argument("--margins", default="1.25")
    parser.add_argument("--peer-clients", default="1,4", help="the peer answers one at a time: a few suffice")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for this service's server (any number of times)")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    config, voice = build(MODELS)
    print(f"model: {config} (full size, random weights); {len(os.sched_getaffinity(0))} CPU cores", flush=True)
    limit = decoder_limit(config)
    tables: dict[str, list] = {}

    def ours(base: str) -> list:
        return crowds(base, counts)

    for margin in [float(m) for m in args.margins.split(",")]:
        env = {**service_env(config, voice, margin, max(counts)),
               **dict(setting.split("=", 1) for setting in args.env)}
        name = f"this service, TTS_REALTIME_MARGIN={margin:g}"
        tables[name] = served([sys.executable, str(ROOT / "tts_server.py")], env, "/health", ours)
        print(name, "done", flush=True)
    if not args.no_peer:
        peer_counts = [int(n) for n in args.peer_clients.split(",")]

        def peer(base: str) -> list:
            form = lambda text: {"data": {"text": text}}  # noqa: E731
            listen(f"{base}/tts", "Un momento.", form, 44)
            return [crowd(f"{base}/tts", form, 44, n, 100 * index) for index, n in enumerate(peer_counts)]

        serve = [str(VENV_BIN / "pocket-tts"), "serve", "--host", "127.0.0.1", "--port", "{port}",
                 "--config", str(config), "--default-voice", str(voice), "--quantize"]
        tables["pocket-tts serve --quantize"] = served(serve, {}, "/health", peer)

    print("\nfull-size Spanish Pocket TTS, every client at once\n")
    print("| server | clients | audio s per wall s | median first audio | worst first audio | "
          "worst pre-buffer | every stream real time | audio per stream | rows held (mean / most) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for name, rows in tables.items():
        for n, rate, median_first, worst_first, worst, per_stream, held in rows:
            print(f"| {name} | {n} | {rate:.2f} | {median_first:.2f} s | {worst_first:.2f} s | {worst:.2f} s | "
                  f"{'yes' if worst <= REAL_TIME_PREBUFFER else 'no'} | {per_stream:.1f} s | {held} |")
    print(f"\nThe limit on this CPU: decoding one audio second with Mimi is {limit['gflop_per_audio_second']:.2f} "
          f"GFLOP; float32 matrix products run at {limit['matmul_gflops']:.0f} GFLOPS (bfloat16 at "
          f"{limit['bf16_matmul_gflops']:.0f}) and Mimi's decoder with 8 rows at {limit['decoder_gflops']:.0f} "
          f"(the package's modules: {limit['package_decoder_gflops']:.0f}, "
          f"{limit['decoder_gflops'] / limit['package_decoder_gflops']:.2f}x). With the flow model free, the "
          f"decoder alone could make at most {limit['at_matmul_rate']:.1f} audio s per wall s at the matmul rate, "
          f"{limit['at_decoder_rate']:.1f} at its own.")
    ratio = limit["decoder_gflops"] / limit["matmul_gflops"]
    print(f"- decoder with 8 rows at 0.8x or more of the float32 matmul rate: {'met' if ratio >= 0.8 else 'not met'} "
          f"({ratio:.2f}x)")
    peer_rows = {row[0]: row for row in tables.get("pocket-tts serve --quantize", [])}
    for name, rows in tables.items():
        if not name.startswith("this service"):
            continue
        by_n = {row[0]: row for row in rows}
        print(f"\n{name}:")
        if 16 in by_n and 1 in peer_rows:
            n, rate, _, _, worst, _, held = by_n[16]
            most = int(held.split("/")[-1]) if "/" in held else 0
            ratio = rate / peer_rows[1][1]
            met = ratio >= 3 and worst <= REAL_TIME_PREBUFFER and most >= 8
            print(f"- 16 clients at 3x or more the audio s per wall s of `pocket-tts serve --quantize` with one "
                  f"client, every started stream real time, at least 8 rows held: {'met' if met else 'not met'} "
                  f"({ratio:.2f}x: {rate:.2f} against {peer_rows[1][1]:.2f}; worst pre-buffer {worst:.2f} s; "
                  f"rows held {held})")
        if 12 in by_n:
            together = by_n[12][3] <= TOGETHER_FIRST_AUDIO and by_n[12][4] <= REAL_TIME_PREBUFFER
            print(f"- 12 clients start together (first audio within {TOGETHER_FIRST_AUDIO:g} s) and stay real time: "
                  f"{'met' if together else 'not met'} "
                  f"(worst first audio {by_n[12][3]:.2f} s, worst pre-buffer {by_n[12][4]:.2f} s)")
        worst = max(row[4] for row in rows)
        print(f"- no started stream needs more than {REAL_TIME_PREBUFFER} s of pre-buffer up to {max(by_n)} "
              f"clients: {'met' if worst <= REAL_TIME_PREBUFFER else 'not met'} (worst {worst:.2f} s)")
        if 1 in by_n and 1 in peer_rows:
            ratio = by_n[1][1] / peer_rows[1][1]
            print(f"- 1 client at 1.1x or more the audio s per wall s of `pocket-tts serve --quantize`: "
                  f"{'met' if ratio >= 1.1 else 'not met'} ({ratio:.2f}x: {by_n[1][1]:.2f} against "
                  f"{peer_rows[1][1]:.2f})")


if __name__ == "__main__":
    main()
