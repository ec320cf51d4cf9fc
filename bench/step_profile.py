#!/usr/bin/env python3
"""Where a Pocket TTS step goes with 1, 4, 8 and 16 rows: flow model, attention, Mimi decoding, Python.

    .venv/bin/python bench/step_profile.py                  # full-size Spanish Pocket TTS, 1,4,8,16 rows
    .venv/bin/python bench/step_profile.py --rows 8,16 --steps 40
    .venv/bin/python bench/step_profile.py --layers-only             # the decoder's layers alone

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


LAYER_TYPES = ("conv", "transposed conv", "depthwise", "ELU", "Linear", "attention")


def matmul_rate(dtype, size: int = 1024, seconds: float = 0.5) -> float:
    """This CPU's matrix-product GFLOPS in `dtype` ([size, size] by [size, size], best of a few)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best, spent = float("inf"), 0.0
    while spent < seconds or best == float("inf"):
        start = time.perf_counter()
        a @ b
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * size ** 3 / best / 1e9


class LayerClock:
    """Seconds and FLOPs per layer type within one decoder call, for the package's modules (hooks)
    and the matrix-product decoder (its timer)."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.flops = collections.Counter()

    def add(self, kind: str, flops: int, seconds: float) -> None:
        self.seconds[kind] += seconds
        self.flops[kind] += flops

    def hook(self, model) -> list:
        import torch

        handles = []
        started = {}

        def kind_of(module):
            if isinstance(module, torch.nn.ConvTranspose1d):
                return "depthwise" if module.groups > 1 else "transposed conv"
            if isinstance(module, torch.nn.Conv1d):
                return "conv"
            if isinstance(module, torch.nn.ELU):
                return "ELU"
            return "Linear"

        def flops_of(module, inputs, output) -> int:
            x = inputs[0]
            if isinstance(module, torch.nn.ConvTranspose1d):
                return 2 * x.numel() * module.out_channels // module.groups * module.kernel_size[0]
            if isinstance(module, torch.nn.Conv1d):
                return 2 * output.numel() * module.in_channels // module.groups * module.kernel_size[0]
            if isinstance(module, torch.nn.ELU):
                return 0
            return 2 * x.numel() * output.shape[-1]

        def before(module, inputs):
            started[id(module)] = time.perf_counter()

        def after(module, inputs, output):
            self.add(kind_of(module), flops_of(module, inputs, output), time.perf_counter() - started[id(module)])

        mimi = model.mimi
        for top in (mimi.upsample, mimi.decoder_transformer, mimi.decoder):
            for module in top.modules():
                linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear"
                if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.ELU)) or linear:
                    handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
        return handles


def layer_profile(model, streaming, counts: list[int], repeats: int) -> None:
    """Mimi's decoder layer by layer, package modules against matrix products, alternately."""
    import torch
    from torch.nn import functional as F

    from tts_service.engines.pocket import frames

    f32, bf16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16, size=256)
    print(f"\nthis CPU's matrix products ([1024, 1024] by [1024, 1024]): float32 {f32:.0f} GFLOPS, "
          f"bfloat16 {bf16:.1f} GFLOPS (256-wide); the float32 rate is timed again between the decoder "
          "calls, and each row count's figures are against the best of those", flush=True)
    clock = LayerClock()
    attention = F.scaled_dot_product_attention

    def timed_attention(q, k, v, *args, **kwargs):
        start = time.perf_counter()
        out = attention(q, k, v, *args, **kwargs)
        clock.add("attention", 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3],
                  time.perf_counter() - start)
        return out

    layers = streaming.seanet_layers
    dtype = next(model.mimi.decoder.parameters()).dtype
    handles = clock.hook(model)
    F.scaled_dot_product_attention = timed_attention
    print("\n| rows | layer type | package: ms per call | GFLOPS | x float32 matmul | matrix products: ms per call "
          "| GFLOPS | x float32 matmul | speed-up |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    try:
        with torch.no_grad():
            for rows in counts:
                states = [streaming.mimi_rows.place(streaming.mimi_fresh, 4000) for _ in range(rows)]
                latents = torch.randn(rows, 4, model.flow_lm.ldim)
                best = {}
                f32 = 0.0  # this row count's float32 matmul rate, timed in turns with its decoder calls
                for repeat in range(repeats + 1):
                    f32 = max(f32, matmul_rate(torch.float32, seconds=0.05))
                    for variant in ("package", "matrix products"):
                        streaming.seanet_layers = layers if variant == "matrix products" else None
                        gemm = frames._seanet(streaming, dtype) if streaming.seanet_layers is not None else None
                        if gemm is not None:
                            gemm.timer = clock.add
                        clock.seconds.clear()
                        clock.flops.clear()
                        start = time.perf_counter()
                        frames.decode_rows(model, streaming, latents, states)
                        whole = time.perf_counter() - start
                        if gemm is not None:
                            gemm.timer = None
                        if repeat == 0:
                            continue  # warm-up: primitives made, memory allocated
                        seen = {kind: (clock.seconds[kind], clock.flops[kind]) for kind in clock.seconds}
                        seen["whole decoder"] = (whole, sum(clock.flops.values()))
                        for kind, (seconds, flops) in seen.items():
                            old = best.get((variant, kind))
                            if old is None or seconds < old[0]:
                                best[variant, kind] = (seconds, flops)
                frames.keep_rows(streaming, [])
                for kind in (*LAYER_TYPES, "whole decoder"):
                    cells = []
                    for variant in ("package", "matrix products"):
                        seconds, flops = best.get((variant, kind), (0.0, 0))
                        rate = flops / seconds / 1e9 if seconds and flops else None
                        cells += [f"{seconds * 1000:.2f}", f"{rate:.0f}" if rate else "-",
                                  f"{rate / f32:.2f}" if rate else "-"]
                    package, ours = best.get(("package", kind), (0.0, 0))[0], best.get(("matrix products", kind),
                                                                                      (0.0, 0))[0]
                    speedup = f"{package / ours:.2f}x" if package and ours else "-"
                    print(f"| {rows} | {kind} | " + " | ".join(cells) + f" | {speedup} |", flush=True)
                print(f"| {rows} | float32 matmul, timed in turns | | {f32:.0f} | 1.00 | | {f32:.0f} | 1.00 | |",
                      flush=True)
    finally:
        F.scaled_dot_product_attention = attention
        for handle in handles:
            handle.remove()
        streaming.seanet_layers = layers
    print("\nEach figure is the best of the calls measured, four frames a row per call, the two decoders "
          "taking turns; 'whole decoder' is the whole call, the timing hooks' own small cost in it. ELU has "
          "no FLOPs counted (a pass over memory with an exponential). 'depthwise' is Mimi's upsampling "
          "from 12.5 to 200 positions a second, the package's module in both.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--layer-repeats", type=int, default=5, help="decoder calls per variant and row count")
    parser.add_argument("--layers-only", action="store_true", help="only the decoder's layers")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: every core; 1 where another process shares the cores)")
    parser.add_argument("--no-layers", action="store_true", help="skip the decoder's layers")
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
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))  # pocket-tts sets one when imported
    internals.set_temperature(engine._model, 0.7)  # sampling as served
    timers = Timers()
    timers.wrap(frames, "flow_step", "flow")
    timers.wrap(frames, "decode_rows", "decode")
    timers.wrap(frames.RowCaches, "attend", "attention")
    timers.wrap(frames, "_attend", "attention")
    print(f"model: {config} (full size, random weights); {len(os.sched_getaffinity(0))} CPU cores, "
          f"{torch.get_num_threads()} torch threads; decoder in {engine.decoder_precision}", flush=True)
    if not args.no_layers:
        layer_profile(engine._model, engine._streaming, counts, args.layer_repeats)
    if args.layers_only:
        return

    print("\n| rows | step | flow model | of it attention | Mimi decoder | of it attention | bookkeeping | "
          "outside torch ops | per row-frame | every row real time |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in counts:
        result = profile(engine, rows, args.steps, timers, python_share=False)
        python = profile(engine, rows, args.steps, timers, python_share=True)
        n = result["steps"]
        part = lambda name: result["totals"].get(name, 0.0) / n * 1000  # noqa: E731
        pipelined = rows == 1 and engine._decode.torch_threads() > 1
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
