#!/usr/bin/env python3
"""Pocket TTS speed-ups tried side by side, each against this CPU's float32 matrix-product rate.

    .venv/bin/python bench/decoder_variants.py                       # every part, one torch thread
    .venv/bin/python bench/decoder_variants.py --parts frames --rows 1,4,8,16
    .venv/bin/python bench/decoder_variants.py --parts flow-int8 --seconds 4
    /tmp/ort-venv/bin/python bench/decoder_variants.py --parts onnx   # where onnxruntime is installed

The full-size random-weight Spanish model (models/bench/pocket-full). Every figure is a ratio of
variants timed in turns in one run (best of several calls), with a [1024, 1024] float32 matrix
product timed among them, so that a busy moment of a shared machine falls on none alone.

- `frames`: the Mimi decoder (`frames.decode_rows`, the service's matrix products) per row-frame
  with rows decoding 4 or 8 frames a call, and a cycle of R rows as the engine runs it (every row
  decoded in the same step), staggered (a quarter of the rows decoded each step, so that every
  step costs the same) and 8 frames a call.
- `flow-int8`: the flow model's flow network (`flow_lm.flow_net`, the one part of the flow model
  pocket-tts leaves in float32 when it quantizes) with int8 weights per output channel and int8
  activations quantized per call (torch's dynamic quantization): its time and a whole flow step's
  against float32 at 1, 8 and 16 rows; and its quality: the same answers' steps run through both
  (teacher-forced on the float32 latents, the same noise), both latent streams decoded by the
  package's float32 decoder and compared as `decoder_quality.py` compares decoders.
- `onnx`: the SEANet decoder as an ONNX model in ONNX Runtime and, where installed, OpenVINO (one
  thread each) against the service's matrix products and torch's own convolutions, one decoder
  call of R rows and 4 frames.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

from pocket_peers import MODELS, ROOT, build
from realtime_capacity import best_times as timed_in_turns

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

FRAME_SECONDS = 0.08


def best_times(runs: list, repeat: int = 7, number: int = 2) -> list[float]:
    """For each of `runs`, the fastest of `repeat` means over `number` calls, the runs taking turns."""
    return timed_in_turns(runs, repeat=repeat, number=number)


def matmul_run():
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return (lambda: a @ b), 2 * 1024 ** 3


def load(config, voice):
    """The engine as served: pocket-tts's int8 transformer, the flow network in float32."""
    from pocket_parity import load_engine

    env = {"TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(config), "TTS_POCKET_LANGUAGES": "es",
           "TTS_ROUTES": "es=pocket", "TTS_DEFAULT_LANGUAGE": "es", "TTS_VOICE_DIR": str(voice.parent),
           "TTS_POCKET_VOICE": voice.stem, "TTS_LOG_FILE": ""}
    return load_engine(env, "es", quantize="on", precision="float32")


def decoder_flops(model, streaming, rows: int, count: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tts_service.engines.pocket import frames

    states = [streaming.mimi_rows.place(streaming.mimi_fresh, 64) for _ in range(rows)]
    # Counted on the package's modules: the same arithmetic, and torch's counter skips the in-place
    # products (`addmm_`) the matrix-product decoder adds with.
    layers, streaming.seanet_layers = streaming.seanet_layers, None
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            frames.decode_rows(model, streaming, torch.randn(rows, count, model.flow_lm.ldim), states)
    finally:
        streaming.seanet_layers = layers
    frames.keep_rows(streaming, [])
    return counter.get_total_flops()


def frames_part(engine, counts: list[int], repeat: int) -> None:
    """The decoder per row-frame at 4 and 8 frames a call; in step, staggered, 8 a call."""
    import torch

    from tts_service.engines.pocket import frames

    model, streaming = engine._model, engine._streaming
    calls = sorted({(rows, count) for total in counts for rows, count in
                    ((total, 4), (max(total // 4, 1), 4), (total, 8))})
    flops = {call: decoder_flops(model, streaming, *call) for call in calls}
    states = {call: [streaming.mimi_rows.place(streaming.mimi_fresh, 64) for _ in range(call[0])] for call in calls}
    latents = {call: torch.randn(call[0], call[1], model.flow_lm.ldim) for call in calls}
    matmul, matmul_flops = matmul_run()
    runs = [matmul] + [lambda call=call: frames.decode_rows(model, streaming, latents[call], states[call])
                       for call in calls]
    with torch.no_grad():
        times = best_times(runs, repeat=repeat)
    frames.keep_rows(streaming, [])
    peak = matmul_flops / times[0]
    seconds = dict(zip(calls, times[1:]))
    print(f"\nfloat32 matmul: {peak / 1e9:.0f} GFLOPS ({torch.get_num_threads()} torch threads)")
    print("\n| rows a call | frames a call | ms a call | ms per row-frame | GFLOPS | x float32 matmul |")
    print("|---:|---:|---:|---:|---:|---:|")
    for call in calls:
        rate = flops[call] / seconds[call]
        print(f"| {call[0]} | {call[1]} | {seconds[call] * 1000:.1f} | {seconds[call] * 1000 / (call[0] * call[1]):.2f} | "
              f"{rate / 1e9:.0f} | {rate / peak:.2f} |")
    print("\n| rows | decoder per row-frame: in step (4 a call) | staggered (a quarter a step) | 8 a call | "
          "staggered / in step | 8 a call / in step | dearest step, in step / staggered |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for total in counts:
        quarter = max(total // 4, 1)
        in_step = seconds[total, 4] / (total * 4)
        staggered = seconds[quarter, 4] / (quarter * 4)
        eight = seconds[total, 8] / (total * 8)
        print(f"| {total} | {in_step * 1000:.2f} ms | {staggered * 1000:.2f} ms | {eight * 1000:.2f} ms | "
              f"{staggered / in_step:.2f}x | {eight / in_step:.2f}x | "
              f"{seconds[total, 4] / seconds[quarter, 4]:.1f}x |")


def int8_copy(module):
    """A copy of the flow network with int8 linear layers: weights per output channel, activations
    quantized per call (torch's dynamic quantization, as pocket-tts quantizes its transformer)."""
    import platform

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if torch.backends.quantized.engine == "none":
        torch.backends.quantized.engine = "qnnpack" if platform.machine() in ("arm64", "aarch64") else "fbgemm"
    return quantize_dynamic(copy.deepcopy(module), {torch.nn.Linear: per_channel_dynamic_qconfig},
                            dtype=torch.qint8, inplace=False)


def flow_rows(engine, rows: int):
    """`rows` pieces started on the engine's voice, past their prompt: (step, pieces)."""
    import torch

    from tts_service.engines.pocket import frames

    model, streaming = engine._model, engine._streaming
    voice = next(iter(engine._voice_states.values()))
    tokens = engine.pieces("Una historia larga que contar hoy, despacio y con calma, con todos los detalles.")[0].tokens
    starts = [frames.start_piece(model, streaming, voice, tokens) for _ in range(rows)]
    latents = [start.latent for start in starts]
    states = [start.flow_state for start in starts]
    with torch.no_grad():
        out, _ = frames.flow_step(model, streaming, latents, [start.prompt for start in starts], states)
    latents = [out[index:index + 1] for index in range(rows)]

    def step():
        nonlocal latents
        new, _ = frames.flow_step(model, streaming, latents, [None] * rows, states)
        latents = [new[index:index + 1] for index in range(rows)]

    return step


def flow_int8_part(engine, counts: list[int], repeat: int, seconds: float, layer_scale: float | None) -> None:
    import torch

    from tts_service.engines.pocket import frames

    model = engine._model
    flow = model.flow_lm
    float_net = flow.flow_net
    int8_net = int8_copy(float_net)
    matmul, matmul_flops = matmul_run()

    def using(net, run):
        def timed():
            flow.flow_net = net
            run()
        return timed

    print(f"\nflow network: {sum(p.numel() for p in float_net.parameters()) / 1e6:.1f} M weights, "
          f"{model.sampler_decode_steps} decode step(s) a frame ({flow.flow_type})")
    print("\n| rows | flow network, float32 | int8 | speed-up | whole flow step, float32 network | int8 network | "
          "speed-up | share of the step saved | float32 matmul GFLOPS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with torch.no_grad():
        for rows in counts:
            cond = torch.randn(rows, float_net.cond_embed.in_features)
            noise = torch.randn(rows, flow.ldim)
            decode = frames._flow_decoders()[flow.flow_type]
            from functools import partial

            net_float = lambda: decode(partial(float_net, cond), noise.clone(), model.sampler_decode_steps)  # noqa: E731
            net_int8 = lambda: decode(partial(int8_net, cond), noise.clone(), model.sampler_decode_steps)  # noqa: E731
            step = flow_rows(engine, rows)
            times = best_times([matmul, net_float, net_int8, using(float_net, step), using(int8_net, step)],
                               repeat=repeat)
            frames.keep_rows(engine._streaming, [])
            flow.flow_net = float_net
            _, nf, ni, sf, si = times
            print(f"| {rows} | {nf * 1000:.2f} ms | {ni * 1000:.2f} ms | {nf / ni:.2f}x | {sf * 1000:.1f} ms | "
                  f"{si * 1000:.1f} ms | {sf / si:.2f}x | {(sf - si) / sf:.0%} | {matmul_flops / times[0] / 1e9:.0f} |",
                  flush=True)
    flow_int8_quality(engine, float_net, int8_net, seconds)
    if layer_scale is not None:
        for name, parameter in model.mimi.decoder_transformer.named_parameters():
            if name.endswith(".scale"):
                parameter.data.fill_(layer_scale)
        print(f"\nThe same with the decoder transformer's layer scales at {layer_scale:g}:")
        flow_int8_quality(engine, float_net, int8_net, seconds)


def flow_int8_quality(engine, float_net, int8_net, seconds: float) -> None:
    """Both networks on the same steps (float32 latents fed back, the same noise), both latent
    streams through the package's float32 decoder, compared."""
    import numpy as np
    import torch
    from decoder_quality import answers, compare, package_audio
    from pocket_parity import speak

    from tts_service.engines.pocket import frames, internals

    model = engine._model
    flow = model.flow_lm
    decoders = frames._flow_decoders()
    original = decoders[flow.flow_type]
    pairs: list = []

    def both(fn, noise, steps):
        cond = fn.args[0]
        reference = original(fn, noise.clone(), steps)
        pairs.append((reference, original(lambda *a: int8_net(cond, *a), noise.clone(), steps), noise.clone()))
        return reference

    internals.set_temperature(model, 0.7)
    results = []
    decoders[flow.flow_type] = both
    try:
        for index, text in enumerate(answers(2)):
            pairs.clear()
            torch.manual_seed(index)
            flow.flow_net = float_net
            speak(engine, [text], seconds=seconds, together=False)
            reference = torch.cat([a for a, _, _ in pairs], 0)[None]
            quantized = torch.cat([b for _, b, _ in pairs], 0)[None]
            noise = torch.cat([c for _, _, c in pairs], 0)[None]
            error = float(((reference - quantized) ** 2).sum())
            latent_snr = 10 * np.log10(float((reference ** 2).sum()) / error)
            flow_snr = 10 * np.log10(float(((reference - noise) ** 2).sum()) / error)
            results.append((latent_snr, flow_snr,
                            compare(package_audio(model, reference), package_audio(model, quantized))))
    finally:
        decoders[flow.flow_type] = original
        internals.set_temperature(model, 0.0)
    print("\n| answer | latent SNR | network output SNR (the latent less its noise) | audio SNR | log-mel distance | error in the quietest windows, 1-12 kHz vs peak | "
          "rise over a 60 dB pause (bound) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for index, (latent_snr, flow_snr, r) in enumerate(results):
        print(f"| {index + 1} | {latent_snr:.1f} dB | {flow_snr:.1f} dB | {r['snr']:.1f} dB | {r['log_mel']:.3f} dB | "
              f"{r['error_floor']:.1f} dB | {r['bound']:+.2f} dB |")
    print("\nEach step's latent from the int8 network is compared with the float32 one from the same input "
          "and noise, the float32 latent fed back, so the error does not compound through the answer "
          "(sampled at temperature 0.7, random weights).")


class PlainSeanet:
    """The SEANet decoder's layers as torch modules over whole inputs (no streaming state), for export."""

    @staticmethod
    def module(layers):
        from torch import nn
        from torch.nn import functional as F

        from tts_service.engines.pocket import decoder as gemm

        class Conv(nn.Module):
            def __init__(self, layer):
                super().__init__()
                self.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
                self.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
                self.dilation = layer.dilation
                self.past = (layer.weight.shape[-1] - 1) * layer.dilation

            def forward(self, x):
                return F.conv1d(F.pad(x, (self.past, 0)), self.weight, self.bias, dilation=self.dilation)

        class ConvTranspose(nn.Module):
            def __init__(self, layer):
                super().__init__()
                self.weight = nn.Parameter(layer.weight.detach().clone(), requires_grad=False)
                self.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
                self.stride = layer.stride

            def forward(self, x):
                y = F.conv_transpose1d(x, self.weight, self.bias, stride=self.stride)
                return y[..., :x.shape[-1] * self.stride]

        class Residual(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return x + self.inner(x)

        def build(items):
            out = []
            for layer in items:
                if isinstance(layer, gemm.Elu):
                    out.append(nn.ELU(layer.alpha))
                elif isinstance(layer, gemm.Residual):
                    out.append(Residual(build(layer.layers)))
                elif isinstance(layer, gemm.Conv):
                    out.append(Conv(layer))
                else:
                    out.append(ConvTranspose(layer))
            return nn.Sequential(*out)

        return build(layers).eval()


def onnx_part(engine, counts: list[int], repeat: int) -> None:
    import tempfile

    import numpy as np
    import torch

    from tts_service.engines.pocket import frames

    try:
        import onnxruntime as ort
    except ImportError:
        print("\nonnx: onnxruntime is not installed in this environment; skipped")
        return
    try:
        import openvino
    except ImportError:
        openvino = None
    model, streaming = engine._model, engine._streaming
    plain = PlainSeanet.module(streaming.seanet_layers)
    gemm_decoder = frames._seanet(streaming, torch.float32)
    positions = 4 * frames.steps_per_latent(model.mimi)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    print(f"\nonnxruntime {ort.__version__}, {options.intra_op_num_threads} thread(s); one SEANet call of 4 frames "
          f"({positions} positions) a row")
    print(f"OpenVINO: {openvino.__version__ if openvino else 'not installed'}")
    print("\n| rows | matrix products (service) | torch convolutions | ONNX Runtime | OpenVINO | "
          "ONNX Runtime / matrix products | OpenVINO / matrix products | GFLOPS: matrix products, ONNX Runtime, OpenVINO | "
          "float32 matmul GFLOPS | ONNX Runtime, OpenVINO vs torch, max difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    matmul, matmul_flops = matmul_run()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "seanet.onnx")
        example = torch.randn(1, 512, positions)
        torch.onnx.export(plain, (example,), path, input_names=["z"], output_names=["audio"],
                          dynamic_axes={"z": {0: "rows", 2: "positions"}}, opset_version=17, dynamo=False)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        compiled = None
        if openvino is not None:
            core = openvino.Core()
            core.set_property("CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                      "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
            compiled = core.compile_model(core.read_model(path), "CPU")
        for rows in counts:
            z = torch.randn(rows, 512, positions)
            z_last = z.transpose(1, 2).contiguous()
            states = {name: {key: torch.cat([streaming.mimi_fresh[name][key]] * rows) for key in streaming.mimi_fresh[name]}
                      for name in streaming.mimi_conv if name.startswith("decoder.")}
            feed = {"z": z.numpy()}
            from torch.utils.flop_counter import FlopCounterMode

            with torch.no_grad():
                with FlopCounterMode(display=False) as counter:
                    reference = plain(z)
                flops = counter.get_total_flops()
                out = session.run(None, feed)[0]
                difference = float(np.abs(out - reference.numpy()).max())
                runs = [matmul, lambda: gemm_decoder(z_last, states), lambda: plain(z), lambda: session.run(None, feed)]
                vino_difference = float("nan")
                if compiled is not None:
                    request = compiled.create_infer_request()
                    vino_difference = float(np.abs(request.infer([z.numpy()])[0] - reference.numpy()).max())
                    runs.append(lambda: request.infer([z.numpy()]))
                times = best_times(runs, repeat=repeat)
            peak = matmul_flops / times[0]
            _, ours, torch_conv, onnx = times[:4]
            vino = times[4] if compiled is not None else float("nan")
            print(f"| {rows} | {ours * 1000:.1f} ms | {torch_conv * 1000:.1f} ms | {onnx * 1000:.1f} ms | "
                  f"{vino * 1000:.1f} ms | {onnx / ours:.2f}x | {vino / ours:.2f}x | "
                  f"{flops / ours / 1e9:.0f}, {flops / onnx / 1e9:.0f}, {flops / vino / 1e9:.0f} | {peak / 1e9:.0f} | "
                  f"{difference:.1e}, {vino_difference:.1e} |", flush=True)
    print("\nTimes per call (lower is better); the ONNX model is the same layers without streaming state "
          "(left padding instead), so its arithmetic is the service's.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="frames,flow-int8,onnx")
    parser.add_argument("--rows", default="1,4,8,16")
    parser.add_argument("--repeat", type=int, default=7, help="rounds of the variants in turn")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per answer for flow-int8's quality")
    parser.add_argument("--layer-scale", type=float, default=1.0,
                        help="flow-int8's quality again with the decoder transformer's layer scales at this "
                             "(random weights start at 0.01, which hides its share of the audio)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: two threads on two shared cores measure who waited)")
    args = parser.parse_args()
    counts = [int(n) for n in args.rows.split(",")]

    import torch

    config, voice = build(MODELS)
    engine = load(config, voice)
    torch.set_num_threads(args.threads)
    print(f"model: {config} (full size, random weights); {len(os.sched_getaffinity(0))} CPU cores, "
          f"{torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.2f}", flush=True)
    parts = args.parts.split(",")
    if "frames" in parts:
        frames_part(engine, counts, args.repeat)
    if "flow-int8" in parts:
        flow_int8_part(engine, counts, args.repeat, args.seconds, args.layer_scale)
    if "onnx" in parts:
        onnx_part(engine, counts, args.repeat)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
