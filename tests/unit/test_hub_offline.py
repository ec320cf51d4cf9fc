"""A first start that cannot reach Hugging Face (a container's usual failure) says so plainly.

The service starts as deployed (gunicorn with the project's config and logging) with HF_ENDPOINT
on a closed local port, HF_HUB_OFFLINE unset and an empty cache: /health names the cause and the
ways out, and the log says the same in one record, with no traceback. The message variants are
also checked on `download` directly, where a real missing file keeps its own message.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest
import requests
from huggingface_hub import errors

from helpers import ROOT, free_port, wait_until
from tts_service.engines.hub import ModelDownloadError, download

# Both engines, each with its own download path (Pocket TTS's package, DSM's checkpoint info).
BOTH = {"TTS_ROUTES": "es=pocket,en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es",
        "TTS_POCKET_PRELOAD_LANGUAGES": "es", "TTS_DSM_MODEL": "kyutai/tts-1.6b-en_fr"}


def raise_unreachable():
    """What huggingface_hub raises when the endpoint refuses and the file is not cached."""
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as refused:
        raise errors.LocalEntryNotFoundError("cannot find the requested files in the local cache") from refused


def test_first_start_without_network_says_hugging_face_cannot_be_reached(tmp_path):
    """Both engines fail to load; each says why, in /health and in one log record."""
    closed = free_port()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "HF_"))}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_HOME": str(tmp_path / "hf"),
            "HOST": "127.0.0.1", "PORT": str(port), "TTS_LOG_FILE": "", "TTS_DEVICE": "cpu",
            "TTS_TORCH_COMPILE": "off", "TTS_HTTP_THREADS": "4", **BOTH}
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                                    "tts_server:create_app()"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    body = response = None

    def failed_to_load() -> bool:
        """The latest /health answer kept in `response` and `body`; whether every engine reported its error."""
        nonlocal body, response
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            response = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
            body = response.json()
        except requests.RequestException:
            return False
        return body["status"] == "error" and all(e.get("error") for e in body["engines"])

    try:
        wait_until(failed_to_load, 180, step=0.3)
        assert body and body["status"] == "error", f"no load failure reported: {body}\n{log.read_text()[-3000:]}"
        assert response.status_code == 503
        assert {e["provider"] for e in body["engines"]} == {"Kyutai Pocket TTS", "Kyutai DSM TTS"}
        for engine in body["engines"]:
            error = engine["error"]
            assert "Hugging Face cannot be reached" in error and f"127.0.0.1:{closed}" in error, error
            assert "HF_HUB_OFFLINE=1" in error and "download_models.py" in error
            assert "no such file" not in error
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
    output = log.read_text()
    failures = [line for line in output.splitlines() if "cannot be reached" in line and " ERROR " in line]
    assert len(failures) == 2, output[-3000:]
    # Said once, before any model loads, and then no retry of the hub client's own.
    early = [line for line in output.splitlines() if "cannot be reached" in line and " WARNING " in line]
    assert len(early) == 1 and output.index(early[0]) < output.index(failures[0]), output[-3000:]
    assert "Retry" not in output and "retry" not in output.replace("without retrying", ""), output[-3000:]
    assert "Traceback" not in output, output[-5000:]


def test_unreachable_hub_is_named_with_its_cause_and_no_chained_error():
    with pytest.raises(ModelDownloadError) as caught:
        download("kyutai/pocket-tts", "the Pocket TTS spanish model", raise_unreachable, "TTS_POCKET_LANGUAGES")
    message = str(caught.value)
    assert "Hugging Face cannot be reached" in message and "Connection refused" in message
    assert "kyutai/pocket-tts" in message and "TTS_POCKET_LANGUAGES" in message
    assert caught.value.expected and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_offline_mode_and_a_missing_file_keep_their_own_messages(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE is set and the file is not in the local cache"):
        download("kyutai/tts-voices", "voice 'x'", raise_unreachable, "TTS_DSM_VOICE")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def missing():
        raise errors.EntryNotFoundError("404 Client Error: Entry Not Found for url: .../nope.safetensors")

    with pytest.raises(ModelDownloadError, match="the repo has no such file"):
        download("kyutai/tts-voices", "voice 'nope'", missing, "TTS_DSM_VOICE")


def test_only_expected_failures_lose_their_traceback(caplog):
    def disk_full():
        raise OSError(28, "No space left on device")

    logger = logging.getLogger("tts_service.engines.base")
    for fetch, expected in ((raise_unreachable, True), (disk_full, False)):
        caplog.clear()
        try:
            download("kyutai/pocket-tts", "the model", fetch, "TTS_POCKET_LANGUAGES")
        except ModelDownloadError as exc:
            assert exc.expected is expected
            with caplog.at_level(logging.ERROR, logger=logger.name):
                logger.exception("failed to load %s", "es")
        (record,) = caplog.records
        assert (record.exc_info is None) is expected
        assert record.getMessage().startswith("failed to load es")
        if expected:
            assert "Hugging Face cannot be reached" in record.getMessage()
