#!/usr/bin/env python3
"""Making a voice from a recording: the time `POST /v1/audio/voices` takes, and what the Mimi encoder
costs in memory, on the full-size Spanish Pocket TTS (random weights).

    .venv/bin/python bench/voice_clone.py                 # full size: 10 s recordings, 3 voices
    .venv/bin/python bench/voice_clone.py --tiny          # the tests' tiny models: seconds
    .venv/bin/python bench/voice_clone.py --seconds 5,15,30 --repeat 3

For each recording length it prints the median time of the whole upload (decode, clean, encode,
write) with the default `TTS_VOICE_ENCODE_THREADS`, and the size of the voice state made. Memory:
the encoder's weights (what `TTS_VOICE_CLONING=off` lets go), and the process's resident memory
after start with cloning on and off, each in a fresh process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import soundfile as sf

from common import ROOT, start_server, stop_server
from first_byte import pocket_env


def speech_like(seconds: float, rate: int = 24000) -> np.ndarray:
    """Voiced syllables with pauses (the same signal the tests use): the trimmer keeps it all."""
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    return (0.2 * voiced * np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.5).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(tiny: bool, cloning: bool) -> dict:
    """In a fresh process: resident memory once the model is loaded, and the encoder's weights."""
    env = {**pocket_env(tiny), "TTS_VOICE_CLONING": "on" if cloning else "off"}
    with tempfile.TemporaryDirectory() as store:
        base, app, server = start_server({**env, "TTS_VOICE_STORE": store})
        try:
            engine = app.extensions["tts_service"].router.route("es").engine
            mimi = engine._model.mimi
            parts = [mimi.encoder, mimi.encoder_transformer, mimi.downsample]
            encoder = sum(p.numel() * p.element_size() for part in parts if part is not None
                          for p in part.parameters())
            return {"rss_mb": rss_mb(), "encoder_mb": encoder / 2 ** 20}
        finally:
            stop_server(app, server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--seconds", default="10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probe", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(memory_probe(args.tiny, args.probe == "on")))
        return

    memory = {}
    for setting in ("on", "off"):
        out = subprocess.run([sys.executable, __file__, "--probe", setting] + (["--tiny"] if args.tiny else []),
                             check=True, capture_output=True, text=True, cwd=ROOT).stdout
        memory[setting] = json.loads(out.strip().splitlines()[-1])

    env = pocket_env(args.tiny)
    with tempfile.TemporaryDirectory() as store:
        base, app, server = start_server({**env, "TTS_VOICE_STORE": store, "TTS_VOICE_MAX_COUNT": "1000"})
        try:
            rows = []
            for seconds in (float(s) for s in args.seconds.split(",")):
                data = io.BytesIO()
                sf.write(data, speech_like(seconds), 24000, format="WAV", subtype="PCM_16")
                times, sizes = [], []
                for index in range(args.repeat):
                    started = time.perf_counter()
                    response = requests.post(f"{base}/v1/audio/voices", data={"name": f"v{seconds:g}-{index}"},
                                             files={"audio_sample": ("a.wav", data.getvalue())}, timeout=600)
                    times.append(time.perf_counter() - started)
                    if not response.ok:
                        raise SystemExit(f"upload failed: {response.status_code} {response.text}")
                    sizes.append(sum(p.stat().st_size for p in (Path(store) / response.json()["id"]).glob("*.safetensors")))
                rows.append((seconds, statistics.median(times), min(times), statistics.median(sizes)))
        finally:
            stop_server(app, server)

    size = "tiny" if args.tiny else "full-size"
    print(f"\n{size} Spanish Pocket TTS, POST /v1/audio/voices, TTS_VOICE_ENCODE_THREADS=1, "
          f"{os.cpu_count()} cores, prompt cut at 15 s\n")
    print("| recording | median upload | fastest | voice state |")
    print("|---|---|---|---|")
    for seconds, median, fastest, state in rows:
        print(f"| {seconds:g} s | {median:.2f} s | {fastest:.2f} s | {state / 2 ** 20:.1f} MB |")
    print(f"\nMimi encoder weights kept for cloning: {memory['on']['encoder_mb']:.1f} MB; "
          f"resident after start: {memory['on']['rss_mb']:.0f} MB with TTS_VOICE_CLONING=on, "
          f"{memory['off']['rss_mb']:.0f} MB with off (encoder weights left: {memory['off']['encoder_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
