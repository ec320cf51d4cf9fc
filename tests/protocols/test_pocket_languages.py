"""Pocket TTS per-language configs, int8, languages loaded on first use and unloaded when idle, threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

from helpers import decode_wav, rms, running_app, wait_until
from tts_service.config import Settings


def pocket_env(tiny_env: dict[str, str], **extra: str) -> dict[str, str]:
    """Only Pocket TTS: Spanish (the default, preloaded) and Italian (loaded when asked for)."""
    return {**tiny_env, "TTS_DEVICE": "cpu", "TTS_POCKET_LANGUAGES": "es,it", "TTS_DEFAULT_LANGUAGE": "es",
            **extra}


def test_a_config_directory_gives_each_language_its_own_yaml(tiny_env, tmp_path):
    from tts_service.engines.pocket import PocketEngine

    settings = Settings.from_env(tiny_env)
    assert PocketEngine(settings, "de").model_id == str(Path(tiny_env["TTS_POCKET_CONFIG_DIR"]) / "de.yaml")
    assert PocketEngine(settings, "it").model_id.endswith("it.yaml")
    # A language the directory lacks uses TTS_POCKET_CONFIG.
    empty = Settings.from_env({**tiny_env, "TTS_POCKET_CONFIG_DIR": str(tmp_path)})
    assert PocketEngine(empty, "de").model_id == tiny_env["TTS_POCKET_CONFIG"]


@pytest.mark.parametrize("setting, device, quantized", [
    ("auto", "cpu", True), ("auto", "cuda", False), ("on", "cuda", True), ("off", "cpu", False),
])
def test_int8_is_on_by_default_on_a_cpu_only(tiny_env, setting, device, quantized):
    from tts_service.engines.pocket import PocketEngine

    settings = Settings.from_env({**tiny_env, "TTS_POCKET_QUANTIZE": setting, "TTS_DEVICE": device})
    assert PocketEngine(settings, "es").quantized is quantized


def test_int8_uses_the_packages_own_quantization(tiny_env):
    from tts_service.engines.pocket import PocketEngine

    kinds = {}
    for setting in ("on", "off"):
        engine = PocketEngine(Settings.from_env({**tiny_env, "TTS_POCKET_QUANTIZE": setting}), "es")
        engine.load()
        kinds[setting] = type(engine._model.flow_lm.transformer.layers[0].linear1)
    assert kinds["off"] is torch.nn.Linear
    assert kinds["on"] is not torch.nn.Linear and "quantized" in kinds["on"].__module__


def test_only_the_preloaded_languages_load_at_start_and_others_on_first_request(tiny_env):
    with running_app(pocket_env(tiny_env, TTS_POCKET_IDLE_UNLOAD="0.5")) as app:
        client = app.test_client()
        health = client.get("/health")
        assert health.status_code == 200
        assert health.get_json()["loaded"] == ["es"]

        response = client.post("/tts", json={"text": "Buongiorno a tutti.", "language": "it"})
        assert response.status_code == 200
        audio, rate = decode_wav(response.get_json()["audioContent"])
        assert rate == 24000 and len(audio) > rate // 4 and rms(audio) > 1e-3
        assert client.get("/health").get_json()["loaded"] == ["es", "it"]

        # Unused for longer than TTS_POCKET_IDLE_UNLOAD, Italian gives its memory back; Spanish stays.
        wait_until(lambda: client.get("/health").get_json()["loaded"] == ["es"], timeout=10, step=0.1)
        health = client.get("/health")
        assert health.status_code == 200 and health.get_json()["loaded"] == ["es"]
        assert app.extensions["tts_service"].router.route("it").engine._model is None

        again = client.post("/tts", json={"text": "Buonasera.", "language": "it"})
        assert again.status_code == 200 and rms(decode_wav(again.get_json()["audioContent"])[0]) > 1e-3


def test_a_loaded_language_keeps_only_what_speaking_needs(tiny_env):
    """Every voice is encoded at load; with cloning off the Mimi encoder's weights are then given back."""
    from tts_service.engines.pocket import PocketEngine

    engine = PocketEngine(Settings.from_env({**tiny_env, "TTS_VOICE_CLONING": "off"}), "es")
    engine.load()
    mimi = engine._model.mimi
    assert not engine.clones_voices
    assert mimi.encoder is None and mimi.encoder_transformer is None and mimi.downsample is None
    assert not any(name.startswith(("encoder", "downsample")) for name, _ in mimi.named_parameters())
    names, default = engine.voices("es")
    assert len(engine._voice_states) == len(names) >= 1


def test_a_language_that_clones_voices_keeps_its_encoder(tiny_env):
    """Voices made while the service runs need the encoder the package's audio-prompt path uses."""
    from tts_service.engines.pocket import PocketEngine

    engine = PocketEngine(Settings.from_env({**tiny_env, "TTS_VOICE_CLONING": "on"}), "es")
    engine.load()
    assert engine.clones_voices
    assert engine._model.mimi.encoder is not None and engine._model.mimi.downsample is not None


def test_the_preload_setting_names_the_languages_loaded_at_start(tiny_env):
    with running_app(pocket_env(tiny_env, TTS_POCKET_PRELOAD_LANGUAGES="es,it")) as app:
        assert app.test_client().get("/health").get_json()["loaded"] == ["es", "it"]


def test_threads_are_set_once_at_start_whatever_an_import_left(tiny_env, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)  # what importing pocket-tts leaves behind
    with running_app(pocket_env(tiny_env)):
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    with running_app(pocket_env(tiny_env, TTS_TORCH_THREADS="3")):
        assert torch.get_num_threads() == 3
    # Replicas sharing a machine are given their cores with the usual OpenMP variable.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with running_app(pocket_env(tiny_env)):
        assert torch.get_num_threads() == 1
    torch.set_num_threads(len(os.sched_getaffinity(0)))


def os_threads() -> set[int]:
    """The ids of this process's threads: sets, since threads of earlier tests may end meanwhile."""
    return {int(task) for task in os.listdir("/proc/self/task")}


def test_a_thread_done_with_torch_gives_its_helper_threads_back():
    """libgomp barely waits for helpers once more threads hold them than there are cores."""
    from tts_service.threads import release_helpers

    torch.set_num_threads(2)
    seen = {}

    def work():
        before = os_threads()
        torch.ones(4_000_000).add_(1)  # a parallel loop: this thread gets a helper
        seen["helpers"] = os_threads() - before
        release_helpers()
        # Released helpers end on their own a moment after they are woken; a thread's own end
        # would also end them, so this thread looks while it is still alive.
        wait_until(lambda: not seen["helpers"] & os_threads(), timeout=5, step=0.01)
        seen["kept"] = seen["helpers"] & os_threads()

    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    assert len(seen["helpers"]) == 1
    assert not seen["kept"]


def test_no_thread_keeps_torch_helpers_once_a_request_is_answered(tiny_env):
    """A language loaded by its first request, in the requester's thread, then spoken in its worker."""
    from tts_service.threads import release_helpers

    with running_app(pocket_env(tiny_env, TTS_TORCH_THREADS="2")) as app:
        client = app.test_client()
        release_helpers()
        before = os_threads()
        response = client.post("/tts", json={"text": "Buongiorno a tutti, come state oggi?", "language": "it"})
        assert response.status_code == 200
        assert rms(decode_wav(response.get_json()["audioContent"])[0]) > 1e-3
        # Every language's worker thread was there before; the helpers of this thread and of the
        # Italian worker, made for the load and the synthesis, are gone once the worker idles.
        assert wait_until(lambda: not os_threads() - before, timeout=5, step=0.05)
