#!/usr/bin/env python3
"""Where a Pocket TTS step goes with 1, 4, 8 and 16 rows: flow model, attention, Mimi decoding, Python.

    .venv/bin/python bench/step_profile.py                  # full-size Spanish Pocket TTS, 1,4,8,16 rows
    .venv/bin/python bench/step_profile.py --rows 8,16 --steps 40

The service's own engine and scheduler (no HTTP), on the full-size random-weight Spanish model
built into models/bench/pocket-full, every core's torch threads, the real-time margin off so
that every row runs at once. For each row count, over `--steps` steps once every row is running,
the mean per step of: the whole step; the flow model (of which attention, each row over its own
KV cache); Mimi's decoder (of which its transformer's attention); the engine's bookkeeping around
them (words, audio hand-out, rows coming and going); and, from torch's profiler in a second pass,
the share of the step spent outside torch's operations (Python and the GIL). Per row and frame
it gives the cost each row adds. A row alone decodes in a second thread while the flow model
steps, so its decoder time is not part of its step.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time

from pocket_peers import MODELS, ROOT, SUBJECTS, build

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

FRAME_SECONDS = 0.08


class Timers:
    """Seconds spent inside wrapped functions, by part, and whether the decoder is on the stack."""

    def __init__(self):
        self.totals = collections.Counter()
        self.local = threading.local()

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            inside = getattr(timers.local, "part", None)
            label = part if inside is None else f"{inside} {part}"
            timers.local.part = part if inside is None else inside
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.totals[label] += time.perf_counter() - start
                timers.local.part = inside

        setattr(owner, name, timed)


def text(index: int) -> str:
    subject = SUBJECTS[index % len(SUBJECTS)]
    return (f"{subject}, número {index + 1}, tiene una historia larga que contar hoy, y la cuenta "
            "despacio, con calma y con todos los detalles que recuerda de aquellos años.")


def profile(engine, rows: int, steps: int, timers: Timers, python_share: bool) -> dict:
    """Run `rows` requests as one batch; measure `steps` steps once all of them are running."""
    import torch

    from tts_service.engines.base import SynthesisRequest
    from tts_service.scheduler import Scheduler

    measured = {"steps": 0, "seconds": 0.0, "totals": {}, "op_seconds": None}
    step = engine.step
    recording = threading.Event()
    done = threading.Event()
    profiler = torch.profiler.profile() if python_share else None  # in the worker's thread: it records that one

    def timed_step():
        measuring = recording.is_set() and measured["steps"] < steps
        if measuring and measured["steps"] == 0:
            timers.totals.clear()
            if profiler is not None:
                profiler.__enter__()
        start = time.perf_counter()
        outputs = step()
        if measuring:
            measured["steps"] += 1
            measured["seconds"] += time.perf_counter() - start
            if measured["steps"] == steps:
                measured["totals"] = dict(timers.totals)
                if profiler is not None:
                    profiler.__exit__(None, None, None)
                    measured["op_seconds"] = sum(event.self_cpu_time_total
                                                 for event in profiler.key_averages()) / 1e6
                done.set()
        return outputs

    engine.step = timed_step
    scheduler = Scheduler(engine, batch_wait=0.5, timeout=600)
    scheduler.start(preload=False)
    try:
        jobs = [scheduler.submit(SynthesisRequest(text(index), engine.language, max_audio_seconds=60.0))
                for index in range(rows)]
        while len(engine.active_jobs()) < rows or any(job.samples == 0 for job in jobs):
            time.sleep(0.01)
        for _ in range(5):  # past the prompts' steps
            before = sum(job.samples for job in jobs)
            while sum(job.samples for job in jobs) == before:
                time.sleep(0.005)
        recording.set()
        if not done.wait(600):
            raise RuntimeError(f"{rows} rows made fewer than {steps} steps in 10 minutes")
        for job in jobs:
            job.cancel()
    finally:
        scheduler.stop(timeout=60)
        engine.step = step
    return {"step": measured["seconds"] / steps, "totals": measured["totals"], "steps": steps,
            "op_seconds": measured["op_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    counts = [int(n) for n in args.rows.split(",")]

    import torch

    from pocket_parity import load_engine
    from tts_service.engines.pocket import frames, internals

    config, voice = build(MODELS)
    env = {"TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(config), "TTS_POCKET_LANGUAGES": "es",
           "TTS_ROUTES": "es=pocket", "TTS_DEFAULT_LANGUAGE": "es", "TTS_VOICE_DIR": str(voice.parent),
           "TTS_POCKET_VOICE": voice.stem, "TTS_MAX_BATCH_SIZE": str(max(counts)), "TTS_LOG_FILE": ""}
    engine = load_engine(env, "es", quantize="on")
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # pocket-tts sets one when it is imported
    internals.set_temperature(engine._model, 0.7)  # sampling as served
    timers = Timers()
    timers.wrap(frames, "flow_step", "flow")
    timers.wrap(frames, "decode_rows", "decode")
    timers.wrap(frames.RowCaches, "attend", "attention")
    timers.wrap(frames, "_attend", "attention")
    print(f"model: {config} (full size, random weights); {len(os.sched_getaffinity(0))} CPU cores, "
          f"{torch.get_num_threads()} torch threads; decoder in {engine.decoder_precision}", flush=True)

    print("\n| rows | step | flow model | of it attention | Mimi decoder | of it attention | bookkeeping | "
          "outside torch ops | per row-frame | every row real time |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in counts:
        result = profile(engine, rows, args.steps, timers, python_share=False)
        python = profile(engine, rows, args.steps, timers, python_share=True)
        n = result["steps"]
        part = lambda name: result["totals"].get(name, 0.0) / n * 1000  # noqa: E731
        pipelined = rows == 1 and engine._torch_threads() > 1
        step_ms = result["step"] * 1000
        decode_ms = part("decode")
        # The decoder's time is part of a step except for a row alone, decoded in its own thread.
        bookkeeping = step_ms - part("flow") - (0.0 if pipelined else decode_ms)
        outside = 1 - python["op_seconds"] / (python["step"] * python["steps"])
        print(f"| {rows} | {step_ms:.1f} ms | {part('flow'):.1f} ms | {part('flow attention'):.1f} ms | "
              f"{decode_ms:.1f} ms{' (own thread)' if pipelined else ''} | {part('decode attention'):.1f} ms | "
              f"{bookkeeping:.1f} ms | {max(outside, 0.0):.0%} | {step_ms / rows:.2f} ms | "
              f"{'yes' if step_ms <= FRAME_SECONDS * 1000 else 'no'} |", flush=True)
    print("\nA step makes one 80 ms frame for every row; the decoder's steps are averaged over its cycle "
          "(it decodes four frames at a time). 'outside torch ops' is measured with the profiler on, "
          "which adds its own cost to every operation; it covers the worker's thread, not a row alone's "
          "decoder thread.")


if __name__ == "__main__":
    main()
