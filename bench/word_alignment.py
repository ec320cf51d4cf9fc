#!/usr/bin/env python3
"""What reading word times from the flow model's attention costs a Pocket TTS step.

    .venv/bin/python bench/word_alignment.py                     # batches of 1 and 8, 3 rounds
    .venv/bin/python bench/word_alignment.py --batches 1,4,16 --rounds 5

Two engines on the same full-size random-weight Spanish model (built once by
scripts/tiny_pocket.py's `build_full_pocket`, as bench/pocket_peers.py does): one reading the
released Spanish checkpoint's four heads (TTS_POCKET_WORD_HEADS=3:9 4:2 4:5 3:10, the list the
service carries for those weights), one with the times off. Each round speaks the same batch of
texts through each engine in turn (every request capped at --seconds of audio) and times every
step; prints the median step per batch size and the difference in percent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
MODELS = ROOT / "models" / "bench" / "pocket-full"
SPANISH_HEADS = "3:9 4:2 4:5 3:10"
TEXTS = ["El tren de la mañana llega tarde porque ha llovido toda la noche en la sierra.",
         "La biblioteca del barrio abre los sábados y presta libros a quien los pida.",
         "Mi abuela cocina una sopa de verduras que huele a domingo y a casa.",
         "El mercado central se llena de voces, frutas y colores desde muy temprano."]


def engine(heads: str, quantize: str):
    from tts_service.config import Settings
    from tts_service.engines.pocket import PocketEngine

    from tiny_pocket import build_full_pocket, voice_wav

    voice = MODELS / "voices" / "bench-es.wav"
    if not (MODELS / "es.yaml").exists():
        build_full_pocket(MODELS, language="es")
    if not voice.exists():
        voice.parent.mkdir(parents=True, exist_ok=True)
        voice_wav(voice)
    settings = Settings.from_env({"TTS_POCKET_CONFIG": str(MODELS / "es.yaml"), "TTS_VOICE_DIR": str(voice.parent),
                                  "TTS_POCKET_VOICE": "bench-es",
                                  "TTS_POCKET_QUANTIZE": quantize, "TTS_POCKET_WORD_HEADS": heads})
    pocket = PocketEngine(settings, "es")
    pocket.load()
    return pocket


def timed_steps(pocket, batch: int, seconds: float) -> list[float]:
    """Every step's time while `batch` requests are spoken together, from first to last frame."""
    from tts_service.engines.base import SynthesisRequest
    from tts_service.scheduler import Job

    jobs = []
    for index in range(batch):
        request = SynthesisRequest(TEXTS[index % len(TEXTS)], "es", max_audio_seconds=seconds)
        pocket.prepare(request)
        job = Job(request, pocket.sample_rate, timeout=600)
        pocket.admit(job)
        jobs.append(job)
    limit = int(seconds / pocket.frame_seconds)
    steps = []
    for _ in range(limit):
        started = time.perf_counter()
        outputs = pocket.step()
        steps.append(time.perf_counter() - started)
        if outputs is None or not pocket.active_jobs():
            break
    for job in list(pocket.active_jobs()):
        pocket.release(job)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quantize", default="auto", choices=("auto", "on", "off"))
    args = parser.parse_args()
    import torch

    engines = {"aligned": engine(SPANISH_HEADS, args.quantize), "off": engine("off", args.quantize)}
    assert engines["aligned"].capabilities.word_times and not engines["off"].capabilities.word_times
    print(f"torch threads {torch.get_num_threads()}, int8 {engines['off'].quantized}")
    for batch in (int(b) for b in args.batches.split(",")):
        times: dict[str, list[float]] = {name: [] for name in engines}
        timed_steps(engines["off"], batch, 0.5)  # warm up both
        timed_steps(engines["aligned"], batch, 0.5)
        for _ in range(args.rounds):
            for name, pocket in engines.items():
                times[name] += timed_steps(pocket, batch, args.seconds)
        off, aligned = statistics.median(times["off"]), statistics.median(times["aligned"])
        print(f"batch {batch:3d}: step {off * 1000:7.2f} ms without, {aligned * 1000:7.2f} ms with word times "
              f"({(aligned / off - 1) * 100:+.1f} %), {len(times['off'])} steps each")


if __name__ == "__main__":
    main()
