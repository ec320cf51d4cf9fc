"""The container image, built here from the Containerfile, serves speech as deployed.

No registry and no container runtime are needed: the Debian base is made by mmdebstrap, the
image by `podman build --isolation=chroot` (tests/system/container_image.py says how, and which
of this machine's package settings it lends the build without writing them into the image), and
the image's own command runs under `buildah run --isolation=chroot` on the host's network, as the
image's user, with host folders as its two volumes and the tiny models built inside it by the
image's own copy of scripts/make_tiny_models.py. Then: /health and the image's health check, a
Spanish /tts decoded as WAV, a WebSocket session on /ws/tts, and SIGTERM to gunicorn (PID 1 in a
container) letting a session in flight finish. A cold build takes a few minutes (torch is
several GB); a warm one reuses every layer but those of changed files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from websockets.sync.client import connect

from helpers import ROOT, decode_wav, free_port, json_session, rms, until_closed, wait_until
from container_image import (HOST_PIP, IMAGE, build_base, build_image, host_pip_values, image_inspect,
                             missing_tools, pip_settings_for_build)

pytestmark = pytest.mark.container

if missing_tools():
    message = f"{', '.join(missing_tools())} missing: ./run_tests.sh installs podman, buildah and mmdebstrap"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

UID = 10001
SPANISH = "Hola, soy Capibara6 con voz natural de Kyutai. ¿Qué tal estás hoy?"
WORDS = "Hola , esta frase llega al contenedor palabra por palabra .".split()


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> dict:
    """Build (or reuse) the base and the image; the seconds each step took, kept in test-artifacts."""
    work = tmp_path_factory.mktemp("image-build")
    base, base_seconds = build_base(work)
    seconds = build_image(base, work)
    times = {"base": base_seconds, "image": seconds, "base_tag": base}
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "container-build-times.json").write_text(json.dumps(times, indent=2) + "\n")
    return times


@contextlib.contextmanager
def mounted(tag: str):
    """The image's file system, read-only, on the host."""
    path = subprocess.run(["podman", "image", "mount", tag], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield Path(path)
    finally:
        subprocess.run(["podman", "image", "unmount", tag], capture_output=True)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class Container:
    """The image's command running under buildah run; `pid` is gunicorn's master."""
    name: str
    process: subprocess.Popen
    log: Path
    port: int
    pid: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find_master(self) -> int | None:
        """gunicorn's master: the first gunicorn below buildah run (below it, its worker)."""
        todo = [self.process.pid]
        while todo:
            pid = todo.pop(0)
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if pid != self.process.pid and any(Path(a.decode()).name == "gunicorn" for a in argv[:2]):
                    return pid
            todo += children(pid)
        return None

    def alive(self) -> bool:
        return self.pid > 0 and Path(f"/proc/{self.pid}").exists()

    def run(self, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run another command in the same container, on the host's network."""
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return subprocess.run(["buildah", "run", "--isolation=chroot", "--network=host", *flags, self.name, "--",
                               *command], capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def start_container(tmp: Path, settings: dict[str, str], tiny_models: bool) -> Container:
    """Run the image's own command (its CMD) in a new container, host folders as its volumes.

    With `tiny_models`, the tiny models are built inside the container first and their settings
    read, so that the CMD then runs as it would."""
    tmp.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for name in ("huggingface", "voices"):
        folder = tmp / name
        folder.mkdir()
        os.chown(folder, UID, UID)
        volumes[name] = folder
    name = f"kyutai-tts-test-{os.getpid()}-{tmp.name}"
    subprocess.run(["buildah", "rm", name], capture_output=True)
    subprocess.run(["buildah", "from", "--pull=never", "--name", name, IMAGE], check=True, capture_output=True)
    port = free_port()
    prepare = ("python /app/scripts/make_tiny_models.py /tmp/tiny >/dev/null && set -a && . /tmp/tiny/env && set +a && "
               if tiny_models else "")
    settings = {"HOST": "127.0.0.1", "PORT": str(port), "TTS_TORCH_COMPILE": "off", "TTS_RATE_LIMIT": "",
                "TTS_HTTP_THREADS": "16", **settings}
    command = ["buildah", "run", "--isolation=chroot", "--network=host",
               "-v", f"{volumes['huggingface']}:/data/huggingface", "-v", f"{volumes['voices']}:/data/voices",
               *[f"--env={k}={v}" for k, v in settings.items()], name, "--",
               "sh", "-c", prepare + 'exec "$@"', "sh", *image_inspect(IMAGE)["Config"]["Cmd"]]
    log = tmp / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Container(name, process, log, port)


def wait_health(container: Container, status: str, timeout: float = 300) -> dict:
    """Poll /health until it reports `status`; the body."""
    answer = None

    def reported() -> bool:
        nonlocal answer
        assert container.process.poll() is None, f"the container exited:\n{container.log.read_text()[-4000:]}"
        container.pid = container.pid or (container.find_master() or 0)
        with contextlib.suppress(requests.RequestException, ValueError):
            body = requests.get(f"{container.base}/health", timeout=5).json()
            if body["status"] == status:
                assert container.pid, "gunicorn's master was not found under buildah run"
                answer = body
                return True
        return False

    wait_until(reported, timeout, step=0.5,
               message=lambda: f"/health never said {status!r}:\n{container.log.read_text()[-4000:]}")
    return answer


@contextlib.contextmanager
def removed_after(container: Container):
    try:
        yield container
    finally:
        container.stop()
        subprocess.run(["buildah", "rm", container.name], capture_output=True)


@pytest.fixture(scope="module")
def service(image, tmp_path_factory):
    """The image serving the tiny models, offline."""
    container = start_container(tmp_path_factory.mktemp("container") / "tiny", {"HF_HUB_OFFLINE": "1"},
                                tiny_models=True)
    with removed_after(container):
        wait_health(container, "ok")
        yield container


def test_image_runs_as_its_own_user_with_volumes_health_check_and_stop_signal(image):
    config = image_inspect(IMAGE)["Config"]
    assert config["User"] == "tts"
    assert set(config["Volumes"]) == {"/data/huggingface", "/data/voices", "/data/jobs"}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HF_HOME"] == "/data/huggingface" and env["TTS_VOICE_STORE"] == "/data/voices"
    assert env["TTS_JOB_STORE"] == "/data/jobs"
    assert env["TTS_LOG_FILE"] == "" and env["HOST"] == "0.0.0.0"
    assert "5001/tcp" in config["ExposedPorts"]
    assert config["Cmd"][0] == "gunicorn" and config["StopSignal"] == "SIGTERM"
    assert image_inspect(IMAGE)["Healthcheck"]["Test"][-1] == "/app/scripts/container_healthcheck.py"
    with mounted(IMAGE) as root:
        for volume in ("data/huggingface", "data/voices", "data/jobs"):
            assert (root / volume).stat().st_uid == UID, f"/{volume} is not the service user's"
        assert (root / "app/tts_service").is_dir() and (root / "app/gunicorn.conf.py").is_file()
        for left_out in (".venv", ".git", "tests", ".env", "models"):
            assert not (root / "app" / left_out).exists(), f"{left_out} reached the image"


def test_build_time_package_settings_stay_out_of_the_image(image):
    values = host_pip_values()
    config = image_inspect(IMAGE)["Config"]
    names = {item.split("=", 1)[0] for item in config["Env"]}
    assert not {n for n in names if n.startswith("PIP_") or n.lower().endswith("_proxy")}
    history = subprocess.run(["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE],
                             capture_output=True, text=True, check=True).stdout
    assert HOST_PIP not in history
    for value in values.values():
        if "/" in value:  # paths and addresses: nothing of where packages came from
            assert value not in history, f"the build's pip setting {value!r} is in the image's history"
    mounts = pip_settings_for_build(values).mounts
    with mounted(IMAGE) as root:
        for path in ("etc/pip.conf", "root/.config/pip", "root/.pip", "etc/xdg/pip", "etc/apt/apt.conf.d/99mmdebstrap"):
            assert not (root / path).exists() or (root / path).stat().st_size == 0, f"/{path} is in the image"
        # Mount points the build left behind are empty: what was lent was never copied in.
        for inside in [*mounts.values(), "/run/secrets"]:
            spot = root / inside.lstrip("/")
            if spot.is_dir():
                assert not any(spot.iterdir()), f"{inside} is not empty in the image"
            elif spot.exists():
                assert spot.stat().st_size == 0, f"{inside} holds data in the image"
        sources = sorted(p.name for p in (root / "etc/apt/sources.list.d").iterdir())
        assert sources == ["debian.sources"]
        assert "URIs: http://deb.debian.org/debian" in (root / "etc/apt/sources.list.d/debian.sources").read_text()


def test_health_and_the_images_health_check(service):
    response = requests.get(f"{service.base}/health", timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["device"] == "cpu" and "es" in body["loaded"]
    ok = service.run("python", "/app/scripts/container_healthcheck.py",
                     env={"HOST": "0.0.0.0", "PORT": str(service.port)})
    assert ok.returncode == 0, ok.stderr
    closed = service.run("python", "/app/scripts/container_healthcheck.py", env={"PORT": str(free_port())})
    assert closed.returncode == 1 and "unhealthy" in closed.stderr


def test_spanish_tts_is_a_wav_of_sound(service):
    response = requests.post(f"{service.base}/tts", json={"text": SPANISH, "language": "es"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "es" and body["format"] == "wav"
    audio, rate = decode_wav(body["audioContent"])
    assert rate == body["sample_rate"] == 24000
    assert len(audio) / rate > 0.3 and len(audio) / rate == pytest.approx(body["duration"], abs=0.01)
    assert rms(audio) > 1e-3, "the audio is silence"


def test_websocket_session_speaks_words_as_they_come(service):
    with connect(f"ws://127.0.0.1:{service.port}/ws/tts?language=es") as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["sample_rate"] == 24000
        for word in WORDS:
            ws.send(json.dumps({"type": "text", "text": word + " "}))
        ws.send(json.dumps({"type": "end"}))
        pcm, events = json_session(until_closed(ws))
    assert events[-1]["type"] == "done", events[-1]
    assert events[-1]["duration"] == pytest.approx(len(pcm) / 2 / 24000, abs=1e-3)
    assert [e["word"] for e in events if e["type"] == "word"] == WORDS
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    assert len(samples) > 2400 and rms(samples) > 1e-3


def test_first_start_without_network_says_so_without_a_traceback(image, tmp_path):
    """The real models, an empty cache volume, Hugging Face out of reach: a container's usual failure."""
    closed = free_port()
    settings = {"HF_ENDPOINT": f"http://127.0.0.1:{closed}", "TTS_DEVICE": "cpu", "TTS_ROUTES": "es=pocket",
                "TTS_POCKET_LANGUAGES": "es", "TTS_POCKET_PRELOAD_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es"}
    with removed_after(start_container(tmp_path / "offline", settings, tiny_models=False)) as container:
        body = wait_health(container, "error", timeout=180)
        assert "Hugging Face cannot be reached" in body["error"] and f"127.0.0.1:{closed}" in body["error"]
        assert requests.post(f"{container.base}/tts", json={"text": SPANISH}, timeout=30).status_code == 503
    log = container.log.read_text()
    # The way out names the image's cache volume.
    assert "cannot be reached" in log and "to /data/huggingface/hub here" in log, log[-3000:]
    assert "Traceback" not in log, log[-5000:]


def test_sigterm_lets_a_stream_in_flight_finish_then_exits_cleanly(service):
    """Last: SIGTERM to gunicorn (a container's stop) serves nothing new and finishes the stream."""
    text = " ".join([SPANISH] * 4)
    with requests.post(f"{service.base}/tts/stream", json={"text": text, "language": "es"}, stream=True,
                       timeout=120) as response:
        assert response.status_code == 200
        chunks = response.iter_content(chunk_size=None)
        received = [next(chunks)]
        os.kill(service.pid, signal.SIGTERM)
        # New requests are no longer served: refused, or left unanswered until gunicorn closes.
        def refused() -> bool:
            try:
                requests.get(f"{service.base}/health", timeout=2)
            except (requests.ConnectionError, requests.Timeout):
                return True
            return False

        wait_until(refused, 10, step=0.1, message="new requests were still served after SIGTERM")
        received += list(chunks)  # a stream cut short raises here (the chunked body never ends)
    audio = b"".join(received)
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    samples = np.frombuffer(audio[44:44 + (len(audio) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
    assert len(samples) / 24000 > 1.0 and rms(samples) > 1e-3
    assert service.process.wait(60) == 0, service.log.read_text()[-3000:]
    log = service.log.read_text()
    # The stream's access line is written when it ends: after the signal was handled.
    assert log.index("Handling signal: term") < log.index("POST /tts/stream 200"), log[-3000:]
