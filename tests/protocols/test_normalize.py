"""Figures read aloud through the service: /normalize shows what /tts gives the engine, a request
may keep its text as written, the lexicon is checked at start and read again, markup overrides."""

from __future__ import annotations

import base64
import io
import signal
import subprocess
import sys

import pytest
import soundfile as sf

from helpers import ROOT, running_app
from tts_service.config import ConfigError, Settings
from tts_service.service import Service

ANSWER = "Según el informe, **el 25 %** de los 1.500 encuestados pagó 12,50 € el 3/5/2024."
SPOKEN = ("Según el informe, el veinticinco por ciento de los mil quinientos encuestados pagó doce euros con "
          "cincuenta céntimos el tres de mayo de dos mil veinticuatro.")


@pytest.fixture(scope="module")
def pocket(tiny_env, tmp_path_factory):
    lexicon = tmp_path_factory.mktemp("lexicon") / "lexicon.tsv"
    lexicon.write_text("# brand names\nes\tCapibara6\tCapibara seis\n*\tSQL\tese cu ele\n", encoding="utf-8")
    env = {**tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_ROUTES": "", "TTS_DEFAULT_LANGUAGE": "es",
           "TTS_RATE_LIMIT": "", "TTS_LEXICON": str(lexicon)}
    with running_app(env) as app:
        yield app, lexicon


def test_normalize_shows_what_the_engine_is_given(pocket):
    app, _ = pocket
    client = app.test_client()
    answer = client.post("/normalize", json={"text": ANSWER, "language": "es"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"text": SPOKEN, "language": "es"}


def test_tts_speaks_that_text_and_its_words_are_the_spoken_ones(pocket):
    app, _ = pocket
    client = app.test_client()
    answer = client.post("/tts", json={"text": ANSWER, "language": "es", "words": True})
    assert answer.status_code == 200, answer.get_json()
    samples, rate = sf.read(io.BytesIO(base64.b64decode(answer.get_json()["audioContent"])), dtype="float32")
    assert rate == 24000 and len(samples) > 0.5 * rate and float(abs(samples).max()) > 1e-3
    words = [w["word"].strip(",.") for w in answer.get_json()["words"]]
    assert words == [w.strip(",.") for w in SPOKEN.split()]


def test_a_request_may_keep_its_figures_as_written(pocket):
    app, _ = pocket
    client = app.test_client()
    kept = client.post("/normalize", json={"text": "Pagó 12,50 € el 3/5/2024.", "language": "es", "normalize": False})
    assert kept.get_json()["text"] == "Pagó 12,50 euros el 3/5/2024."
    bad = client.post("/normalize", json={"text": "Hola", "normalize": "yes"})
    assert bad.status_code == 400 and "'normalize' must be true or false" in bad.get_json()["error"]


def test_the_lexicon_and_markup_override_the_rules(pocket):
    app, _ = pocket
    client = app.test_client()
    text = ('Capibara6 usa SQL y <say-as interpret-as="telephone">612 345 678</say-as>, '
            '<sub alias="la Organización Mundial de la Salud">OMS</sub>.')
    said = client.post("/normalize", json={"text": text, "language": "es"}).get_json()["text"]
    assert said.startswith("Capibara seis usa ese cu ele y seis uno dos")
    assert "la Organización Mundial de la Salud" in said and "OMS" not in said


@pytest.mark.parametrize("body, status", [
    ({"text": ""}, 400), ({"text": "¿¡...!?"}, 400), ({"text": "x" * 5000}, 413), ({"text": 3}, 400),
    ({"text": "Hola", "language": "xx"}, 400)])
def test_normalize_refuses_as_tts_does(pocket, body, status):
    app, _ = pocket
    client = app.test_client()
    answer = client.post("/normalize", json=body)
    assert answer.status_code == status and "error" in answer.get_json()
    assert client.post("/tts", json=body).status_code == status


def test_a_bad_lexicon_stops_the_service_at_start_naming_the_line(tiny_env, tmp_path):
    lexicon = tmp_path / "lexicon.tsv"
    lexicon.write_text("es\tCapibara6\tCapibara seis\nes\tsolo dos campos\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"TTS_LEXICON: .*line 2"):
        Service(Settings.from_env({**tiny_env, "TTS_LEXICON": str(lexicon)}))


def test_the_lexicon_is_read_again_and_a_broken_edit_keeps_the_last_good_one(pocket):
    app, lexicon = pocket
    service = app.extensions["tts_service"]
    client = app.test_client()
    before = lexicon.read_text(encoding="utf-8")
    try:
        lexicon.write_text(before + "es\tGPU\tge pe u\n", encoding="utf-8")
        assert service.reload_lexicon()
        assert client.post("/normalize", json={"text": "Una GPU."}).get_json()["text"] == "Una ge pe u."
        lexicon.write_text("es\tGPU\n", encoding="utf-8")
        assert not service.reload_lexicon()
        assert client.post("/normalize", json={"text": "Una GPU."}).get_json()["text"] == "Una ge pe u."
    finally:
        lexicon.write_text(before, encoding="utf-8")
        service.reload_lexicon()


def test_sighup_reloads_the_lexicon_of_a_running_server(tiny_env, tmp_path):
    """The entry point wires SIGHUP to the reload: a real process, a real signal."""
    import os
    import time

    import requests

    from helpers import free_port, wait_until

    lexicon = tmp_path / "lexicon.tsv"
    lexicon.write_text("es\tGPU\tge pe u\n", encoding="utf-8")
    port = free_port()
    env = {**os.environ, **tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_ROUTES": "", "TTS_DEFAULT_LANGUAGE": "es",
           "TTS_LEXICON": str(lexicon), "PORT": str(port), "HOST": "127.0.0.1", "TTS_LOG_FILE": "",
           "TTS_PRELOAD": "false"}
    process = subprocess.Popen([sys.executable, str(ROOT / "tts_server.py")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/normalize"

    def said() -> str | None:
        try:
            return requests.post(url, json={"text": "Una GPU."}, timeout=5).json()["text"]
        except (requests.RequestException, ValueError, KeyError):
            return None

    try:
        assert wait_until(lambda: said() == "Una ge pe u.", 120)
        lexicon.write_text("es\tGPU\tunidad gráfica\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: said() == "Una unidad gráfica.", 30)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)
        time.sleep(0)
