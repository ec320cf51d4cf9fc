#!/usr/bin/env python3
"""Real-time factor of a DSM model on this machine, through the service's own worker.

    .venv/bin/python bench/realtime_factor.py --full          # full-size random-weight DSM (~4 GB)
    .venv/bin/python bench/realtime_factor.py --full --seconds 3 --batch 1,2

Generates a fixed length of audio (the length limit cuts every request at --seconds) with 1 and
then N requests at once, and prints audio seconds per wall second and the batching gain, all
measured in this run. Real-time needs a factor of 1.0 or more.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time

from common import model_env

TEXT = ("This sentence is long enough that the length limit, and not the end of the text, "
        "decides how much audio every request generates in this measurement.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch", default="1,2")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch.split(",")]

    from tts_service.config import Settings
    from tts_service.engines.base import SynthesisRequest
    from tts_service.routing import Router

    settings = Settings.from_env(model_env(args.full), max_batch_size=max(sizes), request_timeout=7200.0,
                                 max_audio_seconds=args.seconds, dsm_temperature=0.0, preload=False)
    router = Router(settings, cuda=False)
    scheduler = router.schedulers["dsm"]
    started = time.perf_counter()
    scheduler.engine.load()
    print(f"model {settings.dsm_model} loaded in {time.perf_counter() - started:.1f} s "
          f"on {scheduler.engine.device}, {os.cpu_count()} CPUs, n_q={settings.dsm_n_q}")
    scheduler.start(preload=False)

    def one():
        job = scheduler.submit(SynthesisRequest(text=TEXT, language="en", max_audio_seconds=args.seconds))
        return len(job.result().audio) / 24000

    one()  # warm-up
    base = None
    print(f"{'batch':>5} {'audio s':>8} {'wall s':>8} {'x real-time':>12} {'vs batch 1':>11}")
    for size in sizes:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(size) as pool:
            audio = sum(pool.map(lambda _: one(), range(size)))
        wall = time.perf_counter() - started
        factor = audio / wall
        base = base or factor
        print(f"{size:>5} {audio:>8.2f} {wall:>8.2f} {factor:>12.3f} {factor / base:>10.2f}x")
    router.stop(timeout=60)


if __name__ == "__main__":
    main()
