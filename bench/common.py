"""Shared set-up for the benchmarks: models built by scripts/make_tiny_models.py, a live server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TTS_TORCH_COMPILE", "off")

logging.getLogger("werkzeug").setLevel(logging.WARNING)

MODELS = ROOT / "models" / "bench"


def ensure_models(full: bool = False) -> Path:
    """Build the random-weight models once (the full-size DSM takes a minute and ~4 GB)."""
    marker = MODELS / ("dsm-full" if full else "dsm") / "config.json"
    if not marker.exists():
        args = [sys.executable, str(ROOT / "scripts" / "make_tiny_models.py"), str(MODELS)]
        subprocess.run(args + (["--full"] if full else []), check=True)
    return MODELS


def model_env(full: bool = False) -> dict[str, str]:
    models = ensure_models(full)
    env = dict(line.split("=", 1) for line in (models / "env").read_text().split())
    env.update({"TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "", "TTS_DEFAULT_LANGUAGE": "en"})
    if full:
        env["TTS_DSM_MODEL"] = str(models / "dsm-full")
        env["TTS_DSM_VOICE"] = next(str(p) for p in (models / "dsm-full" / "voices").glob("*.safetensors"))
        env["TTS_DSM_N_Q"] = os.environ.get("BENCH_N_Q", "32")
    return env


def start_server(env: dict[str, str], **overrides):
    """Start the real app on a loopback port; returns (base_url, app, server)."""
    from werkzeug.serving import make_server

    from tts_service import create_app
    from tts_service.config import Settings

    app = create_app(Settings.from_env(env, **overrides))
    app.extensions["tts_service"].start()
    client = app.test_client()
    while client.get("/health").get_json()["status"] == "loading":
        time.sleep(0.1)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", app, server


def stop_server(app, server) -> None:
    server.shutdown()
    app.extensions["tts_service"].stop(timeout=60)
