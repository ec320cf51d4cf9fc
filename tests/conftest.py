"""Fixtures: tiny random-weight checkpoints built once per session, and apps served from them."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tts_service import create_app  # noqa: E402
from tts_service.config import Settings  # noqa: E402

# moshi's torch.compile costs ~20 s per process on a CPU and buys nothing for tiny models.
os.environ.setdefault("TTS_TORCH_COMPILE", "off")


TIERS = {"unit": "unit", "protocols": "protocol", "system": "system", "browser": "system"}


def pytest_collection_modifyitems(items):
    """Each test carries its tier's marker, from its folder: `pytest -m unit` runs the fast ones."""
    for item in items:
        tier = TIERS.get(Path(item.fspath).parent.name)
        if tier is not None:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Build the tiny checkpoints with the project's own script, as the README says."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_models.py"), str(out)],
                   check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def tiny_env(tiny_models) -> dict[str, str]:
    """The NAME=VALUE settings written by make_tiny_models.py.

    Admission by real time is off: the tiny DSM runs near real time on a busy CPU, and the tests
    of batching need every slot; tests/unit/test_realtime.py and test_health's own app test it."""
    env = {"TTS_REALTIME_MARGIN": "0"}
    for line in (tiny_models / "env").read_text().splitlines():
        if line.strip():
            name, value = line.split("=", 1)
            env[name] = value
    return env


def dsm_only(env: dict[str, str]) -> dict[str, str]:
    """Settings that route English and French to DSM and load no other engine."""
    return {**env, "TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "", "TTS_DEFAULT_LANGUAGE": "en"}


def started(app):
    """The app with its service started, as the entry point and gunicorn's worker start do."""
    app.extensions["tts_service"].start()
    return app


def wait_ready(client, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/health")
        body = response.get_json()
        if body["status"] != "loading":
            return body
        time.sleep(0.05)
    raise AssertionError("service did not finish loading")


@pytest.fixture
def make_app(tiny_env) -> Iterator[Callable[..., object]]:
    """Build a started app from the tiny settings plus overrides; stopped after the test."""
    apps = []

    def factory(env: dict[str, str] | None = None, wait: bool = True, **overrides):
        settings = Settings.from_env({**(env if env is not None else dsm_only(tiny_env))}, **overrides)
        app = started(create_app(settings))
        apps.append(app)
        if wait:
            wait_ready(app.test_client())
        return app

    yield factory
    for app in apps:
        app.extensions["tts_service"].stop(timeout=30)


def wait_until(check, timeout: float, step: float = 0.02) -> bool:
    """Whether `check()` came true within `timeout` seconds, asked every `step`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


@contextlib.contextmanager
def running_app(env: dict[str, str], **overrides):
    """A started app, ready to serve, stopped when the block ends."""
    app = started(create_app(Settings.from_env(env, **overrides)))
    wait_ready(app.test_client())
    try:
        yield app
    finally:
        app.extensions["tts_service"].stop(timeout=30)


@pytest.fixture(scope="session")
def dsm_app(tiny_env):
    """One shared app on the tiny DSM model, for tests that only read from it."""
    with running_app(dsm_only(tiny_env)) as app:
        yield app


@pytest.fixture
def client(dsm_app):
    return dsm_app.test_client()


def serve(app):
    """Serve an app on a real loopback socket in a thread; returns (base_url, server)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture
def live(make_app):
    """Start an app with overrides on a real socket; yields start(**overrides) -> (base_url, app)."""
    servers = []

    def start(**overrides):
        app = make_app(**overrides)
        base, server = serve(app)
        servers.append(server)
        return base, app

    yield start
    for server in servers:
        server.shutdown()


def decode_wav(b64: str) -> tuple[np.ndarray, int]:
    """Decode the base64 audio of a /tts answer into samples and sample rate."""
    data, rate = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="float32")
    return data, rate


def decode_audio(data: bytes, fmt: str, rate: int = 24000) -> tuple[np.ndarray, int]:
    """Any answer's bytes decoded to float samples and their rate: raw formats (pcm, ulaw, alaw)
    at `rate`, the rest by their own headers (libsndfile for WAV, FFmpeg for the others: a streamed
    FLAC's header cannot say its length, which libsndfile needs)."""
    import av

    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, rate
    if fmt in ("ulaw", "alaw"):
        samples, _ = sf.read(io.BytesIO(data), samplerate=rate, channels=1, format="RAW",
                             subtype=fmt.upper(), dtype="float32")
        return samples, rate
    if fmt == "wav":
        return sf.read(io.BytesIO(data), dtype="float32")
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray()[0] for frame in container.decode(audio=0)]
        return np.concatenate(frames), stream.codec_context.sample_rate


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def until_closed(ws, timeout: float = 180) -> list:
    """Every message a WebSocket server sends until it closes the connection (bounded by `timeout`)."""
    from websockets.exceptions import ConnectionClosed

    messages = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            messages.append(ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
    except ConnectionClosed:
        return messages
    raise AssertionError(f"the server did not close within {timeout} s")


def json_session(messages: list) -> tuple[bytes, list[dict]]:
    """The JSON WebSocket's binary audio, joined, and its JSON events in order."""
    import json

    return (b"".join(m for m in messages if isinstance(m, bytes)),
            [json.loads(m) for m in messages if not isinstance(m, bytes)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """The service as deployed: gunicorn with the project's config on a free port, once it is ready."""
    import requests

    port = free_port()
    log = tmp_path / "tts.log"
    full_env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port), "TTS_LOG_FILE": str(log),
                "TTS_HTTP_THREADS": "16", "TTS_REQUEST_TIMEOUT": "60"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                "tts_server:create_app()"], cwd=ROOT, env=full_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "gunicorn exited during start"
        try:
            if requests.get(f"{base}/health", timeout=10).status_code == 200:
                return process, base
        except requests.RequestException:  # not listening yet, or the worker still booting
            pass
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    raise AssertionError("gunicorn never became ready")
