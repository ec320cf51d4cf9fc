"""The demo page makes a voice from the microphone (Chromium's fake device playing a file) or from a
picked file, and speaks with it, against the real service on the tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import soundfile as sf

from helpers import ROOT, chromium, running_app, served

sys.path.insert(0, str(ROOT / "tests" / "protocols"))
from test_custom_voices import speech_like  # noqa: E402

# Record what the page plays (as tests/browser/test_page.py does).
INSTRUMENT = """
window.__played = [];
const realStart = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (...args) {
  window.__played.push({ duration: this.buffer ? this.buffer.duration : 0 });
  return realStart.apply(this, args);
};
"""


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mic") / "speaker.wav"
    sf.write(path, speech_like(8.0, rate=48000), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def service(tiny_env, tmp_path_factory):
    store = tmp_path_factory.mktemp("voices")
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,es=pocket", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_DEFAULT_LANGUAGE": "es", "TTS_MAX_AUDIO_SECONDS": "4",
                      "TTS_VOICE_STORE": str(store)}) as app, served(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def browser(voice_wav):
    with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={voice_wav}") as browser:
        yield browser


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1100, "height": 1200})
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto(f"{service[0]}/web/")
    page.wait_for_function("() => document.getElementById('voice').options.length > 1")
    yield page
    context.close()


def _speak_with(page, name: str) -> None:
    assert page.eval_on_selector("#voice", "s => s.value") == name
    page.click("#speak")
    page.wait_for_function("() => document.getElementById('provider').textContent === 'Kyutai Pocket TTS'",
                           timeout=60000)
    page.wait_for_function("() => /^Listo/.test(document.getElementById('message').textContent)", timeout=60000)
    played = page.evaluate("window.__played")
    assert played and sum(p["duration"] for p in played) > 0.5


def test_a_voice_recorded_from_the_microphone_is_made_and_spoken(page, service):
    base, app = service
    page.fill("#clone-name", "microfono")
    page.check("#clone-consent")
    page.click("#clone-record")
    page.wait_for_function("() => /Grabando/.test(document.getElementById('clone-status').textContent)")
    page.wait_for_timeout(4000)
    page.click("#clone-record")
    page.wait_for_function("() => /Grabación lista/.test(document.getElementById('clone-status').textContent)")
    page.click("#clone-create")
    page.wait_for_function("() => /creada/.test(document.getElementById('clone-status').textContent)",
                           timeout=60000)
    voice = app.extensions["tts_service"].voice_library.find("microfono")
    assert voice is not None and voice.consent.startswith("La persona que habla")
    _speak_with(page, "microfono")


def test_a_voice_from_a_picked_file_is_made_and_spoken(page, service, voice_wav):
    page.fill("#clone-name", "archivo")
    page.set_input_files("#clone-file", str(voice_wav))
    page.check("#clone-consent")
    page.click("#clone-create")
    page.wait_for_function("() => /creada/.test(document.getElementById('clone-status').textContent)",
                           timeout=60000)
    _speak_with(page, "archivo")


def test_a_refused_upload_is_shown(page):
    page.fill("#clone-name", "archivo-malo")
    page.set_input_files("#clone-file", files=[{"name": "nota.txt", "mimeType": "text/plain",
                                                "buffer": b"no es audio " * 50}])
    page.check("#clone-consent")
    page.click("#clone-create")
    page.wait_for_function("() => /No se pudo crear/.test(document.getElementById('clone-status').textContent)",
                           timeout=60000)
    assert "not audio" in page.text_content("#clone-status")
