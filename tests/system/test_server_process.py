"""The service started as a real process, the way the README says, answering real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import requests

from helpers import ROOT, decode_wav, dsm_only, free_port, rms, wait_until


def start_server(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "tts_server.py")], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_tts_server_py_serves_health_and_tts(tiny_env):
    port = free_port()
    process = start_server(dsm_only(tiny_env) | {"PORT": str(port), "HOST": "127.0.0.1"})
    base = f"http://127.0.0.1:{port}"
    health = None

    def ready() -> bool:
        nonlocal health
        assert process.poll() is None, process.stdout.read()
        try:
            health = requests.get(f"{base}/health", timeout=2)
        except requests.ConnectionError:
            return False
        return health.status_code == 200

    try:
        wait_until(ready, 120, step=0.2, message="server never became ready")
        assert health.json()["status"] == "ok"
        response = requests.post(f"{base}/tts", json={"text": "Hello from a real socket.", "language": "en"},
                                 timeout=60)
        assert response.status_code == 200
        audio, rate = decode_wav(response.json()["audioContent"])
        assert rate == 24000 and rms(audio) > 1e-3
        bad = requests.post(f"{base}/tts", data="{oops", headers={"Content-Type": "application/json"}, timeout=10)
        assert bad.status_code == 400 and "error" in bad.json()
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


def test_bad_setting_fails_at_start_naming_the_variable(tiny_env):
    for name, value in [("PORT", "eighty"), ("TTS_DSM_N_Q", "-3"), ("TTS_DEVICE", "tpu"),
                        ("TTS_ROUTES", "es=espeak"), ("TTS_PRELOAD", "maybe")]:
        process = start_server(dsm_only(tiny_env) | {name: value})
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 2, output
        assert name in output and "Traceback" not in output
