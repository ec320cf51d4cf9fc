"""Voice-agent frameworks' own OpenAI TTS plugins against the live service: Pipecat's
`OpenAITTSService` (pcm, read as it arrives) and LiveKit Agents' `openai.TTS` (mp3 bytes for
`tts-1`, server-sent events for `gpt-4o-mini-tts`).

Each runs in a process of its own from `.venv-agents` (as an agent runs on its own machine; the
frameworks need a newer aiohttp than moshi allows), with the client scripts in `agents/`: the
packages' own code makes the calls, the scripts only collect what each framework hands its
pipeline. The tests check that it is speech at 24 kHz and that its first audio came long before
its last.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, dsm_only, rms, running_app, served

AGENTS_PYTHON = ROOT / ".venv-agents" / "bin" / "python"
SCRIPTS = Path(__file__).parent / "agents"
ANSWER = ("Claro, puedo ayudarte con eso ahora mismo. Primero revisa que tu cuenta esté activa y "
          "después vuelve a intentar el pago.")

if not AGENTS_PYTHON.exists():
    message = ".venv-agents is missing: ./run_tests.sh makes it from requirements-agents.txt"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)


@pytest.fixture(scope="module")
def base(tiny_env):
    """Spanish (the default language, which OpenAI's voice names leave in place) on tiny Pocket TTS."""
    env = {**dsm_only(tiny_env), "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
           "TTS_DEFAULT_LANGUAGE": "es", "TTS_CACHE_BYTES": "0"}
    with running_app(env) as app, served(app) as url:
        yield url


def run_client(tmp_path: Path, script: str, *args: str) -> tuple[list[dict], np.ndarray]:
    out = tmp_path / "answer.pcm"
    done = subprocess.run([str(AGENTS_PYTHON), str(SCRIPTS / script), *args, str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    frames = json.loads(done.stdout.strip().splitlines()[-1])
    pcm = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    return frames, pcm


def check(frames: list[dict], pcm: np.ndarray) -> None:
    assert len(frames) > 2, "the answer came in one piece"
    assert {frame["sample_rate"] for frame in frames} == {24000}
    assert len(pcm) > 24000, "under a second of audio"
    assert rms(pcm) > 1e-3, "silence"
    # The random-weight model speaks for seconds: the first audio comes long before the last.
    first, last = frames[0]["at"], frames[-1]["at"]
    assert first < 0.5 * last, f"first audio at {first:.2f} s of {last:.2f} s: not streamed"


def test_pipecat_openai_tts_service_speaks_as_the_audio_arrives(base, tmp_path):
    check(*run_client(tmp_path, "pipecat_client.py", base, ANSWER))


@pytest.mark.parametrize("model", ["tts-1", "gpt-4o-mini-tts"])  # mp3 bytes, and server-sent events
def test_livekit_openai_tts_speaks_as_the_audio_arrives(base, tmp_path, model):
    check(*run_client(tmp_path, "livekit_client.py", base, model, ANSWER))
