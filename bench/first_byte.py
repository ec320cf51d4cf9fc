#!/usr/bin/env python3
"""Time to the first audio byte of OpenAI's speech API in every format, against /tts/stream.

    .venv/bin/python bench/first_byte.py            # the full-size Spanish Pocket TTS (random weights)
    .venv/bin/python bench/first_byte.py --tiny     # the tests' tiny models: seconds, for a quick look

The way voice agents call it: Pipecat's OpenAITTSService posts `pcm`, LiveKit's openai.TTS `mp3`
(`tts-1`) or server-sent events (`gpt-4o-mini-tts`). Each row is measured side by side in this
run, alternating with `/tts/stream` (WAV) on the same two-sentence Spanish answer, the cache off;
it prints the median first byte, the median whole answer, and the ratio of first bytes to
`/tts/stream`'s (target: about 1), and the share of the answer's time before the first byte.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import requests

from common import ROOT, start_server, stop_server

TEXT = ("Claro, puedo ayudarte con eso ahora mismo. Primero revisa que tu cuenta esté activa y "
        "después vuelve a intentar el pago desde la aplicación.")


def pocket_env(tiny: bool) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from tiny_pocket import build_full_pocket, build_pocket, voice_wav

    out = ROOT / "models" / "bench" / ("pocket-tiny" if tiny else "pocket-full")
    config, voice = out / "es.yaml", out / "voices" / "bench-es.wav"
    if not config.exists():
        if tiny:
            build_pocket(out, languages=("es",))
        else:
            build_full_pocket(out, language="es")
    if not voice.exists():
        voice.parent.mkdir(parents=True, exist_ok=True)
        voice_wav(voice)
    return {"TTS_DEVICE": "cpu", "TTS_ROUTES": "es=pocket", "TTS_POCKET_LANGUAGES": "es",
            "TTS_DEFAULT_LANGUAGE": "es", "TTS_POCKET_CONFIG": str(config), "TTS_VOICE_DIR": str(voice.parent),
            "TTS_POCKET_VOICE": voice.stem, "TTS_CACHE_BYTES": "0", "TTS_RATE_LIMIT": "",
            "TTS_LOG_FILE": "", "TTS_LOG_LEVEL": "warning"}


def timed(url: str, body: dict, skip: int = 0, sse: bool = False) -> tuple[float, float]:
    """(seconds to the first audio byte, seconds to the end). `skip`: header bytes before audio."""
    start = time.perf_counter()
    first, received = None, 0
    with requests.post(url, json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        if sse:
            for line in response.iter_lines():
                if first is None and line.startswith(b"data: ") and b"speech.audio.delta" in line:
                    if json.loads(line[6:])["audio"]:
                        first = time.perf_counter() - start
        else:
            for chunk in response.iter_content(chunk_size=None):
                received += len(chunk)
                if first is None and received > skip:
                    first = time.perf_counter() - start
    return first if first is not None else float("nan"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny models instead of the full size")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base, app, server = start_server(pocket_env(args.tiny))
    speech = f"{base}/v1/audio/speech"
    cases = {
        "/tts/stream wav": (f"{base}/tts/stream", {"text": TEXT}, 44, False),
        "OpenAI pcm (Pipecat)": (speech, {"model": "tts-1", "voice": "alloy", "input": TEXT,
                                          "response_format": "pcm"}, 0, False),
        "OpenAI mp3 (LiveKit tts-1)": (speech, {"model": "tts-1", "voice": "alloy", "input": TEXT}, 0, False),
        "OpenAI mp3 sse (LiveKit gpt-4o-mini-tts)": (speech, {"model": "gpt-4o-mini-tts", "voice": "alloy",
                                                              "input": TEXT, "stream_format": "sse"}, 0, True),
        "OpenAI wav": (speech, {"input": TEXT, "voice": "alloy", "response_format": "wav"}, 44, False),
        "OpenAI opus": (speech, {"input": TEXT, "voice": "alloy", "response_format": "opus"}, 0, False),
        "OpenAI aac": (speech, {"input": TEXT, "voice": "alloy", "response_format": "aac"}, 0, False),
        "OpenAI flac": (speech, {"input": TEXT, "voice": "alloy", "response_format": "flac"}, 0, False),
        "OpenAI ulaw 8 kHz (phone)": (speech, {"input": TEXT, "voice": "alloy", "response_format": "ulaw",
                                               "sample_rate": 8000}, 0, False),
        "OpenAI mp3, stream: false (the old answer)": (speech, {"input": TEXT, "voice": "alloy",
                                                                "stream": False}, 0, False),
    }
    try:
        timed(*cases["/tts/stream wav"])  # warm up
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, case in cases.items():
                if name != "/tts/stream wav":
                    results["/tts/stream wav"].append(timed(*cases["/tts/stream wav"]))
                results[name].append(timed(*case))
    finally:
        stop_server(app, server)
    reference = statistics.median(first for first, _ in results["/tts/stream wav"])
    print(f"\n{'full-size' if not args.tiny else 'tiny'} Spanish Pocket TTS, {len(TEXT)} characters, "
          f"{args.repeat} runs each, medians\n")
    print("| answer | first audio byte | whole answer | first byte / /tts/stream's | first byte / whole |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        first = statistics.median(f for f, _ in runs)
        total = statistics.median(t for _, t in runs)
        print(f"| {name} | {first:.3f} s | {total:.2f} s | {first / reference:.2f} | {first / total:.2f} |")


if __name__ == "__main__":
    main()
