"""What the tests share, imported by name: apps started and served, audio decoded, bounded waits."""

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

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tts_service import create_app  # noqa: E402
from tts_service.config import Settings  # noqa: E402


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


def wait_until(check, timeout: float, step: float = 0.02, message=None) -> bool:
    """Whether `check()` came true within `timeout` seconds, asked every `step`.

    With a `message` (a string, or a callable that returns one when the time is up, to say what was
    seen), a check that never came true raises AssertionError with it instead of returning False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    if check():
        return True
    if message is not None:
        raise AssertionError(message() if callable(message) else message)
    return False


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's threads per operation set to `count` for a while, then as they were: audio compared
    up to float rounding needs one count, whatever earlier tests set."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def running_app(env: dict[str, str], **overrides):
    """A started app, ready to serve, stopped when the block ends."""
    app = started(create_app(Settings.from_env(env, **overrides)))
    wait_ready(app.test_client())
    try:
        yield app
    finally:
        app.extensions["tts_service"].stop(timeout=30)


def serve(app):
    """Serve an app on a real loopback socket in a thread; returns (base_url, server)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@contextlib.contextmanager
def served(app):
    """The app on a real loopback socket for the block; yields its base URL, then stops serving."""
    base, server = serve(app)
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


def spoken_words(text: str, language: str) -> list[str]:
    """The words the service speaks for `text`: figures and abbreviations read aloud ("Capibara6"
    is "Capibara seis"), through the text path every door takes."""
    from tts_service.text.checks import prepare_text

    return prepare_text(text, language, True).split()


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


# -- the browser tier: Debian's Chromium, driven by Playwright ---------------------------------
CHROMIUM = "/usr/bin/chromium"
# No background traffic: this machine has no network beyond loopback, and Chromium's own calls would fail.
ARGS = ("--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")


@contextlib.contextmanager
def chromium(*extra_args: str):
    """A headless Chromium with the tier's flags and any others, closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
