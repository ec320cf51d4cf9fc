"""Voices made from a recording: the package's own state, a library that survives restarts, bad
uploads refused beside a stream that keeps its audio, uploads side by side, keys and budgets."""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
from safetensors import safe_open

from helpers import free_port, rms, running_app, served

RATE = 24000
TEXT = "Hola, esto es una prueba de una voz nueva. Y esta es la segunda frase, un poco más larga."


def speech_like(seconds: float, rate: int = RATE, pitch: float = 140.0, channels: int = 1) -> np.ndarray:
    """Voiced syllables (a few harmonics, four a second) with short pauses: what a trimmer sees as speech."""
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.5
    signal = (0.2 * voiced * syllables).astype(np.float32)
    return np.stack([signal] * channels, axis=1) if channels > 1 else signal


def encoded(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


SAMPLE = encoded(speech_like(4.0))


def upload(base: str, name: str, data: bytes = SAMPLE, key: str | None = None, filename: str = "voice.wav",
           consent: str | None = None) -> requests.Response:
    fields = {"name": name} if name is not None else {}
    if consent is not None:
        fields["consent"] = consent
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{base}/v1/audio/voices", data=fields, files={"audio_sample": (filename, data)},
                         headers=headers, timeout=120)


def voice_env(tiny_env: dict, store: Path, **extra: str) -> dict:
    """Spanish on tiny Pocket TTS, English on tiny DSM, voices kept in `store`."""
    return {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es",
            "TTS_VOICE_STORE": str(store), "TTS_RATE_LIMIT": "", "TTS_MAX_AUDIO_SECONDS": "60", **extra}


def tensors(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}


def stored_folders(store: Path) -> set[str]:
    return {p.name for p in store.iterdir()} if store.is_dir() else set()


@pytest.fixture(scope="module")
def voices(tiny_env, tmp_path_factory):
    """A served app with one voice made already; the byte limit small enough to test cheaply."""
    store = tmp_path_factory.mktemp("voices")
    with running_app(voice_env(tiny_env, store, TTS_VOICE_MAX_BYTES=str(2 * 1024 * 1024))) as app, \
            served(app) as base:
        response = upload(base, "existing")
        assert response.status_code == 200, response.text
        yield base, app, store


def test_a_created_voice_is_the_state_export_voice_writes(tiny_env, tmp_path):
    """The stored state equals, tensor for tensor, what `pocket-tts export-voice` makes of the kept recording."""
    store = tmp_path / "store"
    env = voice_env(tiny_env, store, TTS_POCKET_QUANTIZE="off", TTS_VOICE_KEEP_RECORDING="1")
    stereo_44k = encoded(speech_like(6.0, rate=44100, channels=2), rate=44100, fmt="FLAC")
    with running_app(env) as app:
        with served(app) as base:
            response = upload(base, "clara", stereo_44k, filename="clara.flac")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "audio.voice" and body["type"] == "audio_sample" and body["name"] == "clara"
    assert body["id"].startswith("voice_") and isinstance(body["created_at"], int)
    folder = store / body["id"]
    recording, rate = sf.read(folder / "sample.wav", dtype="float32")
    assert rate == RATE and recording.ndim == 1 and 4.0 < len(recording) / RATE < 6.5

    exported = tmp_path / "exported.safetensors"
    cli = Path(sys.executable).with_name("pocket-tts")
    subprocess.run([str(cli), "export-voice", str(folder / "sample.wav"), str(exported), "--config",
                    tiny_env["TTS_POCKET_CONFIG"], "--quiet"], check=True, capture_output=True, timeout=300)
    ours, theirs = tensors(folder / "es.safetensors"), tensors(exported)
    assert set(ours) == set(theirs) and ours
    for key in theirs:
        assert ours[key].shape == theirs[key].shape, key
        assert np.allclose(ours[key].float().numpy(), theirs[key].float().numpy(), atol=1e-5, equal_nan=True), key


def test_the_library_survives_a_restart(tiny_env, tmp_path):
    store = tmp_path / "store"
    env = voice_env(tiny_env, store)
    with running_app(env) as app:
        with served(app) as base:
            made = upload(base, "lucia", consent="I, Lucía, agree to this recording being used.").json()
            spoken_before = requests.post(f"{base}/tts", json={"text": TEXT, "voice": "lucia"}, timeout=120)
    assert spoken_before.status_code == 200 and spoken_before.json()["voice"] == "lucia"
    meta = json.loads((store / made["id"] / "voice.json").read_text())
    assert meta["consent"].startswith("I, Lucía") and not (store / made["id"] / "sample.wav").exists()
    (store / ".tmp-voice_000000000000000000000000").mkdir()  # what a crash in the middle of a write leaves

    with running_app(env) as app:
        client = app.test_client()
        listed = client.get("/v1/audio/voices").get_json()
        assert listed["object"] == "list" and [v["id"] for v in listed["data"]] == [made["id"]]
        assert listed["data"][0] == made
        assert "lucia" in client.get("/voices").get_json()["languages"]["es"]["voices"]
        for voice in ("lucia", made["id"]):
            response = client.post("/tts", json={"text": TEXT, "voice": voice})
            assert response.status_code == 200, response.get_json()
        assert stored_folders(store) == {made["id"]}, "the interrupted write was not cleared"
        assert client.delete(f"/v1/audio/voices/{made['id']}").get_json() == {
            "id": made["id"], "object": "audio.voice", "deleted": True}
        assert client.post("/tts", json={"text": TEXT, "voice": "lucia"}).status_code == 400
    assert stored_folders(store) == set()


# -- bad uploads, each beside a stream that must get all of its audio --------------------------
def _stream(base: str, text: str, started: threading.Event) -> bytes:
    with requests.post(f"{base}/tts/stream", json={"text": text, "format": "pcm"}, stream=True, timeout=120) as r:
        assert r.status_code == 200
        chunks = []
        for chunk in r.iter_content(4096):
            chunks.append(chunk)
            started.set()
        return b"".join(chunks)


def _long_wav_header_only() -> bytes:
    return encoded(speech_like(3.0))[:44 + 4000]  # says 3 s, holds 0.08 s


BAD_UPLOADS = {
    "not audio": (dict(data=b"this is a text file, not a recording " * 40), 400, "invalid_audio_format"),
    "truncated": (dict(data=_long_wav_header_only()), 400, "invalid_audio"),
    "silence": (dict(data=encoded(np.zeros(3 * RATE, np.float32))), 400, "audio_silent"),
    "under a second of speech": (dict(data=encoded(np.concatenate([np.zeros(RATE, np.float32), speech_like(0.6),
                                                                    np.zeros(RATE, np.float32)]))),
                                 400, "audio_too_short"),
    "over 30 s": (dict(data=encoded(speech_like(31.0, rate=8000), rate=8000)), 400, "audio_too_long"),
    "over the byte limit": (dict(data=b"\0" * (2 * 1024 * 1024 + 1)), 413, "file_too_large"),
    "a name with a path": (dict(name="../../etc/passwd"), 400, "invalid_value"),
    "a name with a space": (dict(name="my voice"), 400, "invalid_value"),
    "a name too long": (dict(name="a" * 65), 400, "invalid_value"),
    "a name that looks like an id": (dict(name="voice_0123456789abcdef01234567"), 400, "invalid_value"),
    "a name a built-in voice has": (dict(name="tiny-es"), 409, "voice_name_taken"),
    "a duplicate name": (dict(name="existing"), 409, "voice_name_taken"),
}


@pytest.fixture(scope="module")
def full_length(voices):
    """The neighbour's audio alone (random weights follow the text's length, so it is the same every time)."""
    base, _, _ = voices
    return len(_stream(base, TEXT, threading.Event()))


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_a_bad_upload_is_refused_and_a_neighbour_keeps_its_audio(voices, full_length, case):
    base, app, store = voices
    before = stored_folders(store)
    listed = requests.get(f"{base}/v1/audio/voices", timeout=30).json()
    fields, status, code = BAD_UPLOADS[case]
    started = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        neighbour = pool.submit(_stream, base, TEXT, started)
        assert started.wait(60), "the neighbour's stream never started"
        response = upload(base, fields.get("name", f"new-{abs(hash(case))}"), fields.get("data", SAMPLE))
        audio = neighbour.result(timeout=120)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in response.text
    assert str(store) not in response.text
    assert len(audio) == full_length, "the neighbour lost audio"
    pcm = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768
    assert rms(pcm) > 1e-3
    assert stored_folders(store) == before, "a refused upload left something behind"
    assert requests.get(f"{base}/v1/audio/voices", timeout=30).json() == listed


def test_the_byte_limit_is_a_413_before_the_body_is_read(voices):
    """Content-Length alone decides: the server answers while the client has sent only the headers."""
    import socket
    from urllib.parse import urlsplit

    base, _, _ = voices
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/audio/voices HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: 999999999\r\n\r\n")
        answer = b""
        while b"}" not in answer:  # the status line and the JSON body may come in two writes
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        answer = answer.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "file_too_large" in answer


def test_a_full_library_refuses_another_voice(tiny_env, tmp_path):
    env = voice_env(tiny_env, tmp_path / "store", TTS_VOICE_MAX_COUNT="1")
    with running_app(env) as app:
        with served(app) as base:
            assert upload(base, "first").status_code == 200
            response = upload(base, "second")
    assert response.status_code == 409 and response.json()["error"]["code"] == "voice_limit_reached"
    assert len(stored_folders(tmp_path / "store")) == 1


def test_two_uploads_at_once(voices):
    base, app, store = voices
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda name: upload(base, name), ["ana", "bea"]))
        same = list(pool.map(lambda _: upload(base, "twin"), range(2)))
    assert [r.status_code for r in made] == [200, 200], [r.text for r in made]
    ids = {r.json()["id"] for r in made}
    assert len(ids) == 2 and ids <= stored_folders(store)
    assert sorted(r.status_code for r in same) == [200, 409]
    for name in ("ana", "bea", "twin"):
        response = requests.post(f"{base}/tts", json={"text": TEXT, "voice": name}, timeout=120)
        assert response.status_code == 200 and response.json()["voice"] == name


def test_a_voice_is_made_outside_the_workers(voices, monkeypatch):
    """Encoding runs in the library's own thread, never in a worker's step."""
    from tts_service.engines.pocket import PocketEngine

    base, _, _ = voices
    threads = []
    real = PocketEngine.clone_state

    def spying(self, samples):
        threads.append(threading.current_thread().name)
        return real(self, samples)

    monkeypatch.setattr(PocketEngine, "clone_state", spying)
    assert upload(base, "outside").status_code == 200
    assert threads and all(name.startswith("voice-encode") for name in threads), threads


def test_dsm_refuses_a_custom_voice_clearly(voices):
    base, _, _ = voices
    response = requests.post(f"{base}/tts", json={"text": "Hello there.", "language": "en", "voice": "existing"},
                             timeout=60)
    assert response.status_code == 400
    assert "voice cloning" in response.json()["error"] and response.json()["code"] == "voice_cloning_unavailable"


def test_nothing_private_is_logged_or_served(tiny_env, tmp_path, caplog):
    store = tmp_path / "secret-store-folder"
    with running_app(voice_env(tiny_env, store, TTS_VOICE_KEEP_RECORDING="1")) as app:
        with caplog.at_level(logging.DEBUG):
            client = app.test_client()
            made = client.post("/v1/audio/voices", data={"name": "quiet", "audio_sample": (io.BytesIO(SAMPLE), "a.wav")},
                               content_type="multipart/form-data")
            listed = client.get("/v1/audio/voices")
            one = client.get(f"/v1/audio/voices/{made.get_json()['id']}")
    assert made.status_code == 200 and one.get_json() == made.get_json()
    for text in (made.get_data(as_text=True), listed.get_data(as_text=True), caplog.text):
        assert "secret-store-folder" not in text and "safetensors" not in text and "sample.wav" not in text
    assert "quiet" in caplog.text  # the creation is logged, by id and name


def test_creating_and_deleting_need_the_admin_key(tiny_env, tmp_path):
    env = voice_env(tiny_env, tmp_path / "store", TTS_API_KEY="user-key", TTS_ADMIN_KEY="admin-key")
    with running_app(env) as app:
        with served(app) as base:
            assert upload(base, "keyed").status_code == 401
            refused = upload(base, "keyed", key="user-key")
            made = upload(base, "keyed", key="admin-key")
            listing = requests.get(f"{base}/v1/audio/voices", headers={"Authorization": "Bearer user-key"}, timeout=30)
            spoken = requests.post(f"{base}/tts", json={"text": TEXT, "voice": "keyed"},
                                   headers={"Authorization": "Bearer user-key"}, timeout=120)
            url = f"{base}/v1/audio/voices/{made.json()['id']}"
            not_deleted = requests.delete(url, headers={"Authorization": "Bearer user-key"}, timeout=30)
            deleted = requests.delete(url, headers={"Authorization": "Bearer admin-key"}, timeout=30)
    assert refused.status_code == 401 and "admin key" in refused.json()["error"]["message"]
    assert made.status_code == 200 and listing.status_code == 200 and len(listing.json()["data"]) == 1
    assert spoken.status_code == 200
    assert not_deleted.status_code == 401 and deleted.status_code == 200


def test_uploads_share_the_clients_rate_budget(tiny_env, tmp_path):
    env = voice_env(tiny_env, tmp_path / "store", TTS_RATE_LIMIT="2/minute")
    with running_app(env) as app:
        with served(app) as base:
            assert requests.post(f"{base}/tts", json={"text": "Hola."}, timeout=60).status_code == 200
            assert upload(base, "budget").status_code == 200
            over = upload(base, "budget2")
            speech_after = requests.post(f"{base}/tts", json={"text": "Hola."}, timeout=60)
    assert over.status_code == 429 and speech_after.status_code == 429


def test_a_custom_voice_is_in_wyoming_info(tiny_env, tmp_path):
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # wyoming imports audioop, deprecated since 3.11
        from wyoming.event import async_read_event, async_write_event
        from wyoming.info import Describe, Info

    port = free_port()
    env = voice_env(tiny_env, tmp_path / "store", TTS_WYOMING_PORT=str(port), TTS_WYOMING_HOST="127.0.0.1")

    async def describe():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await async_write_event(Describe().event(), writer)
        info = Info.from_event(await asyncio.wait_for(async_read_event(reader), 30))
        writer.close()
        return info

    with running_app(env) as app:
        client = app.test_client()
        assert client.post("/v1/audio/voices", data={"name": "casa", "audio_sample": (io.BytesIO(SAMPLE), "a.wav")},
                           content_type="multipart/form-data").status_code == 200
        info = asyncio.run(describe())
    names = [voice.name for voice in info.tts[0].voices]
    assert "es:casa" in names and not any(name == "en:casa" for name in names)


def test_a_voice_whose_making_timed_out_never_appears(tiny_env, tmp_path, monkeypatch):
    """The client was told 503: the voice must not be on disk, now or after a restart, even when
    the encoder had already passed its last check before the waiter gave up."""
    from tts_service.engines.pocket import PocketEngine

    store = tmp_path / "store"
    env = voice_env(tiny_env, store, TTS_REQUEST_TIMEOUT="3")
    real = PocketEngine.write_voice_state
    written = threading.Event()

    def slow_write(self, state, path):
        real(state, path)
        threading.Event().wait(4.0)  # past the waiter's timeout, after the encoder's abandoned check
        written.set()

    monkeypatch.setattr(PocketEngine, "write_voice_state", slow_write)
    with running_app(env) as app:
        with served(app) as base:
            response = upload(base, "late")
            assert written.wait(30), response.text
            library = app.extensions["tts_service"].voice_library
            library._encoder.shutdown(wait=True)  # the encoder thread finishes what it was doing
    assert response.status_code == 503 and response.json()["error"]["code"] == "timeout"
    assert stored_folders(store) == set()
    monkeypatch.setattr(PocketEngine, "write_voice_state", real)
    with running_app(env) as app:
        assert app.test_client().get("/v1/audio/voices").get_json()["data"] == []


def test_a_voice_made_for_another_model_says_so_and_how_to_make_it_again(tiny_env, tmp_path):
    store = tmp_path / "store"
    env = voice_env(tiny_env, store)
    with running_app(env) as app:
        client = app.test_client()
        made = client.post("/v1/audio/voices", data={"name": "vieja", "audio_sample": (io.BytesIO(SAMPLE), "v.wav")},
                           content_type="multipart/form-data").get_json()
    meta_path = store / made["id"] / "voice.json"
    meta = json.loads(meta_path.read_text())
    meta["states"]["es"]["model"] = "kyutai/pocket-tts-older"  # as if the model was upgraded since
    meta_path.write_text(json.dumps(meta))
    with running_app(env) as app:
        response = app.test_client().post("/tts", json={"text": TEXT, "voice": "vieja"})
    body = response.get_json()
    assert response.status_code == 400 and body["code"] == "voice_made_for_another_model"
    assert "another 'es' model" in body["error"] and "POST /v1/audio/voices" in body["error"]
    assert "kyutai/pocket-tts-older" in body["error"]
