#!/usr/bin/env python3
"""What each Mimi decoder precision does to the audio: the same latents through the package's own
float32 decoder and through the service's frame loop, compared.

    .venv/bin/python bench/decoder_quality.py                          # full-size Spanish, random weights
    .venv/bin/python bench/decoder_quality.py --precisions float32,bfloat16 --seconds 4
    .venv/bin/python bench/decoder_quality.py --config path/to/es.yaml --voice path/to/voice.wav

Latents come from the service's own engine speaking a few answers (float32 decoder, sampling at
the served temperature), recorded as they reach the decoder. Each answer's latents are then
decoded by `MimiModel.decode_from_latent` (the package's float32 decoder, four frames per call
as the engine decodes them) and by `frames.decode_rows` with the engine loaded at each
`TTS_POCKET_DECODER_PRECISION`, every answer a row of one batch as served. Per precision:

- waveform SNR against the package's audio (an exact path keeps 90 dB or more; a lossy one 35);
- log-mel distance: mean absolute difference of 80-band log-mel power, in dB;
- the noise floor in pauses: the 1-12 kHz power, against the peak, in the 80 ms windows where
  the package's audio is at least 40 dB under its loudest window (the quietest tenth where none
  is), and its rise over the package's own floor (a lossy path keeps it within 3 dB).

Without the released weights (no network here) the default is the full-size random-weight model:
its arithmetic is the real one, its audio is not speech and has no true pauses, so the floor
compares the quietest windows. With `--config`, any pocket-tts config, released weights included.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from pocket_peers import MODELS, ROOT, SUBJECTS, build

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

RATE = 24000
CHUNK_FRAMES = 4  # frames per decoder call, as the engine decodes a row
EXACT_SNR, LOSSY_SNR, FLOOR_RISE = 90.0, 35.0, 3.0
SPEECH_PAUSE = -60.0  # dB against the peak: a pause in released Mimi audio is 50-65 dB under it


def answers(count: int) -> list[str]:
    return [f"{SUBJECTS[i % len(SUBJECTS)]}, número {i + 1}, tiene una historia larga que contar hoy; "
            "espera un momento. Después la cuenta despacio." for i in range(count)]


def engine_env(config, voice) -> dict[str, str]:
    return {"TTS_DEVICE": "cpu", "TTS_POCKET_CONFIG": str(config), "TTS_POCKET_LANGUAGES": "es",
            "TTS_ROUTES": "es=pocket", "TTS_DEFAULT_LANGUAGE": "es", "TTS_VOICE_DIR": str(voice.parent),
            "TTS_POCKET_VOICE": voice.stem, "TTS_LOG_FILE": ""}


def record_latents(env: dict, texts: list[str], seconds: float) -> list:
    """Each answer's latents ([1, frames, ldim]) as the service's engine hands them to the decoder."""
    import torch
    from pocket_parity import load_engine, speak

    from tts_service.engines.pocket import frames, internals

    engine = load_engine(env, "es", quantize="on", precision="float32")
    internals.set_temperature(engine._model, 0.7)
    seen: list = []
    original = frames.decode_rows

    def recording(model, streaming, latents, states):
        seen.append(latents.detach().clone())
        return original(model, streaming, latents, states)

    frames.decode_rows = recording
    try:
        recorded = []
        for text in texts:  # one at a time: each call's latents are this answer's next frames
            seen.clear()
            torch.manual_seed(len(recorded))
            speak(engine, [text], seconds=seconds, together=False)
            recorded.append(torch.cat(seen, dim=1))
    finally:
        frames.decode_rows = original
    frames_each = min(latent.shape[1] for latent in recorded)
    return [latent[:, :frames_each] for latent in recorded]


def package_audio(model, latents) -> np.ndarray:
    """`MimiModel.decode_from_latent` in float32, CHUNK_FRAMES per call, one answer alone."""
    import torch
    from pocket_tts.modules.stateful_module import increment_steps, init_states

    from tts_service.engines.pocket import frames

    mimi = model.mimi
    steps = frames.steps_per_latent(mimi)
    state = init_states(mimi, batch_size=1, sequence_length=latents.shape[1] * steps)
    out = []
    with torch.no_grad():
        for start in range(0, latents.shape[1], CHUNK_FRAMES):
            chunk = latents[:, start:start + CHUNK_FRAMES]
            out.append(mimi.decode_from_latent(chunk * model.flow_lm.emb_std + model.flow_lm.emb_mean, state))
            increment_steps(mimi, state, increment=steps * chunk.shape[1])
    return torch.cat(out, dim=-1).view(-1).numpy().astype(np.float64)


def service_audio(engine, latents: list) -> tuple[list[np.ndarray], float]:
    """`frames.decode_rows` with the engine's settings, every answer a row of one batch; and the
    seconds the decoding took."""
    import torch

    from tts_service.engines.pocket import frames

    model, streaming = engine._model, engine._streaming
    steps = frames.steps_per_latent(model.mimi)
    count = latents[0].shape[1]
    states = [streaming.mimi_rows.place(streaming.mimi_fresh, count * steps) for _ in latents]
    batch = torch.cat(latents, dim=0)
    pieces = [[] for _ in latents]
    began = time.perf_counter()
    with torch.no_grad():
        for start in range(0, count, CHUNK_FRAMES):
            for row, audio in enumerate(frames.decode_rows(model, streaming, batch[:, start:start + CHUNK_FRAMES],
                                                           states)):
                pieces[row].append(audio)
    took = time.perf_counter() - began
    frames.keep_rows(streaming, [])
    return [torch.cat(row, dim=-1).view(-1).numpy().astype(np.float64) for row in pieces], took


def mel_filters(n_fft: int = 1024, bands: int = 80, low: float = 0.0, high: float = 12000.0) -> np.ndarray:
    """Triangular filters on the mel scale ([bands, n_fft // 2 + 1])."""
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(low), mel(high), bands + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / RATE)
    filters = np.zeros((bands, bins.size))
    for band in range(bands):
        left, centre, right = edges[band:band + 3]
        filters[band] = np.clip(np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)), 0, None)
    return filters


def spectrum(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Power spectrogram ([frames, n_fft // 2 + 1]), Hann window."""
    window = np.hanning(n_fft)
    count = 1 + max(len(audio) - n_fft, 0) // hop
    framed = np.stack([audio[i * hop:i * hop + n_fft] * window for i in range(count)])
    return np.abs(np.fft.rfft(framed, axis=1)) ** 2


def log_mel_distance(reference: np.ndarray, audio: np.ndarray) -> float:
    filters = mel_filters()
    floor = 1e-10 * float(np.max(reference ** 2)) * 1024
    ref = 10 * np.log10(spectrum(reference) @ filters.T + floor)
    out = 10 * np.log10(spectrum(audio) @ filters.T + floor)
    return float(np.mean(np.abs(ref - out)))


def pauses(reference: np.ndarray, window: int = RATE * 80 // 1000) -> tuple[list[int], bool]:
    """Starts of the 80 ms windows that are pauses: 40 dB or more under the loudest window; the
    quietest tenth where there are none (then False)."""
    count = len(reference) // window
    power = np.array([np.mean(reference[i * window:(i + 1) * window] ** 2) for i in range(count)])
    quiet = [i * window for i in range(count) if power[i] <= power.max() * 1e-4]
    if quiet:
        return quiet, True
    order = np.argsort(power)[:max(count // 10, 1)]
    return [int(i) * window for i in order], False


def band_floor(audio: np.ndarray, starts: list[int], peak: float, window: int = RATE * 80 // 1000) -> float:
    """Mean 1-12 kHz power in the windows at `starts`, in dB against the peak sample's power."""
    bins = np.fft.rfftfreq(window, 1 / RATE)
    band = (bins >= 1000) & (bins <= 12000)
    hann = np.hanning(window)
    powers = []
    for start in starts:
        spectrum_ = np.abs(np.fft.rfft(audio[start:start + window] * hann)) ** 2
        # Parseval with the window's energy: mean power per sample of the band's part.
        powers.append(spectrum_[band].sum() * 2 / (window * np.sum(hann ** 2)))
    return 10 * math.log10(max(float(np.mean(powers)), 1e-30) / peak ** 2)


def compare(reference: np.ndarray, audio: np.ndarray) -> dict:
    n = min(len(reference), len(audio))
    reference, audio = reference[:n], audio[:n]
    error = audio - reference
    snr = 10 * math.log10(float(np.sum(reference ** 2)) / max(float(np.sum(error ** 2)), 1e-300))
    starts, true_pauses = pauses(reference)
    peak = float(np.max(np.abs(reference)))
    ref_floor = band_floor(reference, starts, peak)
    floor = band_floor(audio, starts, peak)
    error_floor = band_floor(error, starts, peak)
    # Where there are no true pauses: the error, as loud as in these windows, added to a 60 dB-deep pause
    # (an upper bound: a lossy decoder's error shrinks with the signal).
    bound = 10 * math.log10(1 + 10 ** ((error_floor - SPEECH_PAUSE) / 10))
    return {"snr": snr, "log_mel": log_mel_distance(reference, audio), "floor": floor, "ref_floor": ref_floor,
            "rise": floor - ref_floor, "error_floor": error_floor, "pauses": true_pauses,
            "bound": 0.0 if true_pauses else bound, "windows": len(starts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="float32,bfloat16,int8",
                        help="TTS_POCKET_DECODER_PRECISION values to compare (auto: what this CPU gets)")
    parser.add_argument("--answers", type=int, default=2, help="answers, decoded as rows of one batch")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per answer")
    parser.add_argument("--config", help="a pocket-tts config (default: the full-size random-weight Spanish model)")
    parser.add_argument("--voice", help="the voice WAV, with --config")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    parser.add_argument("--layer-scale", type=float, default=None,
                        help="set the decoder transformer's layer scales to this (random weights start at "
                             "0.01, which hides its share of the audio; 1 shows it whole)")
    args = parser.parse_args()

    import os

    import torch

    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    if args.config:
        from pathlib import Path

        config, voice = Path(args.config), Path(args.voice)
    else:
        config, voice = build(MODELS)
    env = engine_env(config, voice)
    print(f"model: {config}{'' if args.config else ' (full size, random weights)'}; "
          f"{args.answers} answers of {args.seconds:g} s as rows of one batch; {torch.get_num_threads()} torch threads",
          flush=True)
    latents = record_latents(env, answers(args.answers), args.seconds)

    def scaled(engine):
        if args.layer_scale is not None:
            for name, parameter in engine._model.mimi.decoder_transformer.named_parameters():
                if name.endswith(".scale"):
                    parameter.data.fill_(args.layer_scale)
        return engine

    from pocket_parity import load_engine

    from tts_service.engines.pocket import internals

    table = []
    # The package's float32 decoder, on its own copy of the weights.
    reference_engine = scaled(load_engine(env, "es", quantize="on", precision="float32"))
    references = [package_audio(reference_engine._model, latent) for latent in latents]
    del reference_engine
    for precision in args.precisions.split(","):
        engine = scaled(load_engine(env, "es", quantize="on", precision=precision))
        internals.set_temperature(engine._model, 0.7)
        audio, took = service_audio(engine, latents)
        results = [compare(reference, row) for reference, row in zip(references, audio)]
        worst = {"snr": min(r["snr"] for r in results), "log_mel": max(r["log_mel"] for r in results),
                 "floor": max(r["floor"] for r in results), "ref_floor": max(r["ref_floor"] for r in results),
                 "rise": max(r["rise"] for r in results), "error_floor": max(r["error_floor"] for r in results),
                 "pauses": all(r["pauses"] for r in results), "bound": max(r["bound"] for r in results)}
        table.append((precision, engine.decoder_precision, worst, took, sum(len(a) for a in audio) / RATE))
        print(f"{precision} done ({took:.1f} s)", flush=True)

    print("\n| TTS_POCKET_DECODER_PRECISION | runs as | SNR (worst row) | log-mel distance | floor in pauses, "
          "1-12 kHz vs peak | package's floor | rise | error in pauses | rise over a 60 dB pause (bound) | "
          "decoding, audio s per wall s | verdict |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for precision, runs_as, worst, took, audio_seconds in table:
        exact = runs_as == "float32"
        if exact:
            verdict = "exact" if worst["snr"] >= EXACT_SNR else f"NOT exact (under {EXACT_SNR:g} dB)"
        else:
            good = worst["snr"] >= LOSSY_SNR and max(worst["rise"], worst["bound"]) <= FLOOR_RISE
            verdict = "passes" if good else f"fails (needs {LOSSY_SNR:g} dB SNR and a rise of {FLOOR_RISE:g} dB at most)"
        print(f"| {precision} | {runs_as} | {worst['snr']:.1f} dB | {worst['log_mel']:.3f} dB | {worst['floor']:.1f} dB | "
              f"{worst['ref_floor']:.1f} dB | {worst['rise']:+.2f} dB | {worst['error_floor']:.1f} dB | "
              f"{'-' if worst['pauses'] else format(worst['bound'], '+.2f') + ' dB'} | "
              f"{audio_seconds / took:.2f} | {verdict} |")
    pauses_seen = all(row[2]["pauses"] for row in table)
    print(f"\nPauses: {'windows 40 dB or more under the loudest' if pauses_seen else 'none 40 dB under the loudest window in some answer; the quietest tenth of windows instead, and the verdict takes the bound'}. "
          "'error in pauses' is the difference's own 1-12 kHz power there; the bound adds it to a pause "
          f"{-SPEECH_PAUSE:g} dB under the peak.")


if __name__ == "__main__":
    main()
