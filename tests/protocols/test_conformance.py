"""One request, one verdict: every case goes through every surface, on both engines.

Each case has one expected answer: speech, or a refusal of one kind. Each surface says a refusal
its own way, by the small tables below (written here by hand, and checked against the service's
own); a streamed surface may end a text that turned out to hold nothing speakable without audio
instead of refusing it, but never speaks it. The Kyutai protocol's documented fallback for an
unknown voice (moshi-server's) is the one exception.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import dsm_only, free_port, rms, running_app, served, wait_until
from test_custom_voices import SAMPLE
from tts_service.text.written import display
from surfaces import (SURFACES, JsonWebSocket, KyutaiPost, KyutaiWebSocket, OpenAI, Tts, TtsStream, Verdict,
                      Wyoming, WyomingStream)

MAX_CHARS = 200
HTTP = {"bad_request": 400, "too_large": 413, "unknown_voice": 400, "forbidden": 403, "conflict": 409,
        "nothing_to_say": 400, "busy": 503,
        "unavailable": 503, "timed_out": 503, "internal": 500}
CLOSE = {"bad_request": 1008, "too_large": 1009, "unknown_voice": 1008, "forbidden": 1008, "conflict": 1008,
         "nothing_to_say": 1008, "busy": 1013,
         "unavailable": 1013, "timed_out": 1013, "internal": 1011}
WYOMING = {"bad_request": "bad-request", "too_large": "too-long", "unknown_voice": "unknown-voice",
           "forbidden": "forbidden", "conflict": "conflict",
           "nothing_to_say": "nothing-to-say", "busy": "busy", "unavailable": "unavailable",
           "timed_out": "timeout", "internal": "internal"}
SIGNALS = {Tts: HTTP, TtsStream: HTTP, OpenAI: HTTP, KyutaiPost: HTTP, KyutaiWebSocket: CLOSE,
           JsonWebSocket: {kind: kind for kind in HTTP}, Wyoming: WYOMING, WyomingStream: WYOMING}

# name: (text, voice, language override or None for the engine's, expected: "speech" or a refusal kind)
CASES = {
    "a normal text": ("Hola, ¿qué tal estás hoy? Esto es una prueba.", None, None, "speech"),
    "Markdown and emoji": ("**Hola** 😀 esto es _una_ [prueba](https://example.com) 🎉.", None, None, "speech"),
    "quotes and guillemets": ("«Hola», dijo ella. \"Bien\" y ‘vale’.", None, None, "speech"),
    "a pause tag": ('Hola. <break time="0.4s"/> Adiós.', None, None, "speech"),
    "only punctuation": ("¿¡...!?", None, None, "nothing_to_say"),
    "only emoji": ("😀🎉👍", None, None, "nothing_to_say"),
    "empty": ("", None, None, "bad_request"),
    "over the limit": ("palabra " * 30, None, None, "too_large"),
    "a lone surrogate": ("Hola \ud800 mundo.", None, None, "bad_request"),
    "an unknown voice": ("Hola, esto es una prueba.", "nobody", None, "unknown_voice"),
    "an unknown language": ("Hola, esto es una prueba.", None, "xx", "bad_request"),
}
CUSTOM_VOICE = "clonada"
# Where a streamed text may end without audio instead of being refused.
SILENT_ALLOWED = {"nothing_to_say", "bad_request"}


def expected(surface, case: str, kind: str) -> tuple[str, object]:
    if kind == "speech" or (case == "an unknown voice" and surface in (KyutaiWebSocket, KyutaiPost)):
        return "speech", None
    return "refused", SIGNALS[surface][kind]


def assert_verdict(surface, case: str, kind: str, verdict: Verdict) -> None:
    outcome, signal = expected(surface, case, kind)
    where = f"{surface.name}, {case}: {verdict}"
    if outcome == "speech":
        assert verdict.outcome == "speech", where
        assert len(verdict.audio) > 0.3 * 24000 and rms(verdict.audio) > 1e-3, f"{where}: no audio or silence"
        return
    assert verdict.outcome != "speech", f"{where}: spoke what it should have refused"
    if verdict.outcome == "silent":
        assert surface.streamed_text and kind in SILENT_ALLOWED, f"{where}: ended without saying why"
        return
    assert verdict.signal == signal, f"{where}: expected {signal!r}"


@pytest.fixture(scope="module")
def both_engines(tiny_env, tmp_path_factory):
    """English on tiny DSM, Spanish on tiny Pocket TTS, every surface on real sockets; one custom voice made."""
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es",
           "TTS_WYOMING_PORT": str(free_port()), "TTS_WYOMING_HOST": "127.0.0.1", "TTS_MAX_CHARS": str(MAX_CHARS),
           "TTS_MAX_AUDIO_SECONDS": "3", "TTS_RATE_LIMIT": "", "TTS_REQUEST_TIMEOUT": "60",
           "TTS_VOICE_STORE": str(tmp_path_factory.mktemp("voices"))}
    with running_app(env) as app:
        made = app.test_client().post("/v1/audio/voices", content_type="multipart/form-data", data={
            "name": CUSTOM_VOICE, "audio_sample": (io.BytesIO(SAMPLE), "sample.wav")})
        assert made.status_code == 200, made.get_json()
        with served(app) as base:
            yield base, app


@pytest.mark.parametrize("language", ["en", "es"], ids=["DSM", "Pocket TTS"])
def test_a_custom_voice_speaks_on_pocket_and_is_refused_on_dsm_everywhere(both_engines, language):
    """Made from a recording: spoken by Pocket TTS on every surface; a bad request on DSM (no voice cloning).

    Wyoming's voice name overrides its language, so there the voice is named as `describe` names
    voices, with its language first."""
    base, app = both_engines
    port = app.extensions["tts_service"].settings.wyoming_port
    voice_id = app.extensions["tts_service"].voice_library.find(CUSTOM_VOICE).id
    kind = "speech" if language == "es" else "bad_request"
    failures = []
    for surface in SURFACES:
        for voice in (CUSTOM_VOICE, voice_id):
            if surface in (Wyoming, WyomingStream):
                voice = f"{language}:{voice}"
            try:
                assert_verdict(surface, f"a custom voice ({voice})", kind,
                               surface(base, port).speak("Hola, esto es una prueba.", language, voice))
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_the_tables_here_are_the_services_own():
    from tts_service.routes.errors import HTTP_STATUS
    from tts_service.routes.websocket import CLOSE_CODES
    from tts_service.speech.refusals import KINDS
    from tts_service.routes.wyoming import ERROR_CODES

    assert set(KINDS) == set(HTTP) and HTTP_STATUS == HTTP and CLOSE_CODES == CLOSE and ERROR_CODES == WYOMING


@pytest.mark.parametrize("language", ["en", "es"], ids=["DSM", "Pocket TTS"])
@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_every_case_gets_one_verdict_on_every_surface(both_engines, surface, language):
    base, app = both_engines
    client = surface(base, app.extensions["tts_service"].settings.wyoming_port)
    failures = []
    for case, (text, voice, language_override, kind) in CASES.items():
        try:
            assert_verdict(surface, case, kind, client.speak(text, language_override or language, voice))
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_no_language_and_no_voice_speaks_the_default_language(both_engines, surface):
    base, app = both_engines
    verdict = surface(base, app.extensions["tts_service"].settings.wyoming_port).speak(
        "Hola, esto es una prueba.", None, None)
    assert_verdict(surface, "the default", "speech", verdict)


def test_a_voice_without_a_language_speaks_in_its_own_language(both_engines):
    """The one rule: a voice only DSM has is spoken in English although the default is Spanish."""
    base, app = both_engines
    router = app.extensions["tts_service"].router
    dsm_voice = router.route("en").engine.voices("en")[1]
    assert dsm_voice not in router.route("es").engine.voices("es")[0]
    port = app.extensions["tts_service"].settings.wyoming_port
    for surface in SURFACES:
        assert_verdict(surface, "a DSM voice", "speech", surface(base, port).speak("Hello there, a test.", None,
                                                                                   dsm_voice))


@pytest.fixture
def loading_app(make_app, monkeypatch):
    """DSM still loading (its load waits for the test), every surface on real sockets."""
    from tts_service.engines.dsm import DsmEngine

    release = threading.Event()
    real_load = DsmEngine._load

    def slow_load(self):
        release.wait(120)
        real_load(self)

    monkeypatch.setattr(DsmEngine, "_load", slow_load)
    app = make_app(wait=False, wyoming_port=free_port(), wyoming_host="127.0.0.1", rate_limit="")
    with served(app) as base:
        try:
            yield base, app
        finally:
            release.set()


def test_an_engine_still_loading_is_unavailable_everywhere(loading_app):
    base, app = loading_app
    port = app.extensions["tts_service"].settings.wyoming_port
    failures = []
    for surface in SURFACES:
        try:
            assert_verdict(surface, "loading", "unavailable", surface(base, port).speak("Hello there.", "en", None))
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def long_answers(tiny_env):
    env = {**dsm_only(tiny_env), "TTS_WYOMING_PORT": str(free_port()), "TTS_WYOMING_HOST": "127.0.0.1",
           "TTS_MAX_AUDIO_SECONDS": "120", "TTS_RATE_LIMIT": ""}
    with running_app(env) as app, served(app) as base:
        yield base, app


@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_a_client_that_leaves_mid_answer_has_its_work_freed(long_answers, surface):
    base, app = long_answers
    service = app.extensions["tts_service"]
    scheduler = service.router.schedulers["dsm"]
    cancelled = scheduler.stats.cancelled
    surface(base, service.settings.wyoming_port).leave("Hello there, this is a long answer to a question. " * 40,
                                                       "en")
    wait_until(lambda: not (scheduler.active or scheduler.queue_depth or service.slots.used("dsm")), 60, step=0.1)
    assert scheduler.active == 0 and scheduler.queue_depth == 0 and service.slots.used("dsm") == 0
    assert scheduler.stats.cancelled > cancelled, "the answer ran to its end instead of being dropped"


# -- what is said: figures read the same on every surface, whole or streamed as an LLM's tokens ----
# language: [(the text as the tokens an LLM streams, what the engine is given)]
SPOKEN = {
    "es": [
        (["El café cuesta 1", ",50", " €", " y el menú 12", " €."],
         "El café cuesta un euro con cincuenta céntimos y el menú doce euros."),
        (["Quedan 2", "1 pá", "ginas y 3", " días. ", "Nos vemos a las 14", ":30", "."],
         "Quedan veintiuna páginas y tres días. Nos vemos a las catorce treinta."),
        (["El Sr", ". García vive en EE", ". UU", ". desde 19", "90."],
         "El señor García vive en Estados Unidos desde mil novecientos noventa."),
        (["Subió un 2", "5 % ", "en el siglo XX", "I."],
         "Subió un veinticinco por ciento en el siglo veintiuno."),
    ],
    "en": [
        (["It costs $5", ".99 on March 3", ", 2024."],
         "It costs five dollars and ninety-nine cents on March third, twenty twenty-four."),
    ],
}


@pytest.fixture
def said(monkeypatch):
    """What the text path hands the engine, request after request."""
    from tts_service.speech import session

    given: list[str] = []
    real = session.prepare_text

    def spy(*args, **kwargs):
        text = real(*args, **kwargs)
        given.append(text)
        return text

    monkeypatch.setattr(session, "prepare_text", spy)
    return given


@pytest.mark.parametrize("language", ["en", "es"], ids=["DSM", "Pocket TTS"])
@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_figures_are_read_alike_whole_or_streamed_on_every_surface(both_engines, said, surface, language,
                                                                    monkeypatch):
    """Kyutai's protocol takes a word per message (its clients split an LLM's text at spaces); the
    other streamed surfaces get the tokens as they come."""
    base, app = both_engines
    monkeypatch.setattr(app.extensions["tts_service"], "cache", None)  # each text is prepared, not replayed
    client = surface(base, app.extensions["tts_service"].settings.wyoming_port)
    failures = []
    for pieces, spoken in SPOKEN[language]:
        said.clear()
        if surface is KyutaiWebSocket:
            pieces = "".join(pieces).split()
        verdict = client.speak("".join(pieces), language, None, pieces=pieces)
        heard = " ".join(" ".join(said).split())
        if verdict.outcome != "speech" or heard != spoken:
            failures.append(f"{surface.name}: {''.join(pieces)!r} was given as {heard!r} ({verdict})")
    assert not failures, "\n".join(failures)


def _words_whole(base: str, text: str, language: str) -> list[dict]:
    answer = requests.post(f"{base}/tts", json={"text": text, "language": language, "words": True}, timeout=180)
    assert answer.status_code == 200, answer.text
    return answer.json()["words"]


def _words_streamed(base: str, pieces: list[str], language: str) -> list[dict]:
    words = []
    with connect(f"{base.replace('http', 'ws', 1)}/ws/tts?language={language}", open_timeout=30) as ws:
        for piece in pieces:
            ws.send(json.dumps({"type": "text", "text": piece}))
        ws.send(json.dumps({"type": "end"}))
        try:
            while True:
                message = ws.recv(timeout=180)
                if isinstance(message, str) and json.loads(message)["type"] == "word":
                    words.append({k: v for k, v in json.loads(message).items() if k != "type" and k != "word_times"})
        except ConnectionClosed:
            pass
    return words


@pytest.mark.parametrize("language", ["en", "es"], ids=["DSM", "Pocket TTS"])
def test_words_show_what_was_written_whole_or_streamed(both_engines, language):
    """Word events keep the spoken words; the written form each reads is the same whether the text
    came whole or as an LLM's tokens, and the words shown as written give back the text."""
    base, _ = both_engines
    for pieces, spoken in SPOKEN[language]:
        text = "".join(pieces)
        whole, streamed = _words_whole(base, text, language), _words_streamed(base, pieces, language)
        assert [w["word"] for w in whole] == spoken.split()[:len(whole)]
        for words in (whole, streamed):
            assert any(w.get("written") for w in words), (text, words)
            shown = " ".join(w["word"] for w in display(words))
            assert " ".join(text.split()).startswith(shown.rstrip(".,")), (text, words)
        same = min(len(whole), len(streamed))
        assert [(w["word"], w.get("written")) for w in whole[:same]] == \
            [(w["word"], w.get("written")) for w in streamed[:same]]
