"""Odd and hostile text on every surface and both engines: each gets audio or a clear 4xx, in
bounded time, and a neighbour speaking at the same time on the same engine gets its full audio."""

from __future__ import annotations

import concurrent.futures
import io
import json
import time

import msgpack
import numpy as np
import pytest
import requests
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import json_session, rms, running_app, served, until_closed

TABLE = "| Producto | Precio | Stock |\n|---|---|---|\n" + "".join(
    f"| Artículo {i} | {i},50 € | {i * 3} |\n" for i in range(1, 200))
TABLE = TABLE[: TABLE.rfind("\n", 0, 2990) + 1]

CORPUS = {
    "closing_quote": 'Dijo: hola. "',
    "guillemet_after_sentence": "Hola. »",
    "french_guillemets": "Il a dit : « Bonjour. »",
    "quotes_everywhere": '"«»“”„ \'Hola\' « » "adiós" » ” " ( ) [ ]',
    "inverted_marks_alone": "¿¡",
    "only_punctuation": "!!! ... ??? ;;; ::: ,,, --- «» () []",
    "only_emoji": "😀🎉🚀👍🏽❤️‍🔥",
    "markdown_table": TABLE,
    "newlines": "\n" * 2999 + "x",
    "hash_then_spaces": "# a" + " " * 2995 + "b",
    "code_blocks": "Mira:\n```python\nprint('hola')\n```\nY esto ```sin cerrar\n~~~\nfin",
    "angle_brackets": "if a<b and c>d then x",
    "break_malformed": 'Hola <break time="1x5s"/> mundo.',
    "break_huge": 'Hola <break time="' + "9" * 400 + 's"/> mundo.',
    "break_long": 'Hola <break time="40s"/> mundo.',
    "break_nested": '<break time="<break time="1s"/>"/> hola <break<break time="1s"/>> fin.',
    "lone_surrogate": "Hola \ud800 mundo",
    "zero_width_and_bidi": "Ho\u200bla\u200f mun\u202edo\u2066 fin\ufeff.",
    "nul_and_controls": "Hola\x00 mundo\x01\x1b[31m rojo\x7f.",
    "long_word": "a" * 3000,
    "chinese_and_arabic": "Hola 你好世界 y مرحبا بالعالم, adiós.",
    "currencies_and_numbers": "Cuesta $5.99, 10 € o ¥300; el 50% de 1.000.000. Precio: $5. Gracias",
    "urls_and_emails": "Visita https://example.com/a?b=c&d=e o www.ejemplo.es y escribe a ana.perez+tts@correo.example.org.",
}

ENGINES = {"dsm": "en", "pocket": "es"}
NEIGHBOUR = {"en": "Hello there, this is the neighbour speaking a whole sentence.",
             "es": "Hola, soy la vecina y digo una frase entera sin prisa."}
TIMEOUT = 120


@pytest.fixture(scope="module")
def live_both(tiny_env):
    """Both engines on a real socket, audio capped short so that long texts stay quick."""
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "es", "TTS_MAX_AUDIO_SECONDS": "4",
           "TTS_RATE_LIMIT": "", "TTS_CACHE_BYTES": "0"}
    with running_app(env) as app, served(app) as base:
        yield base, app


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return samples, rate


def check_http(response: requests.Response, audio_of) -> str:
    """A 200 with real audio or a 4xx with a JSON message; returns which."""
    if response.status_code == 200:
        samples, rate = audio_of(response)
        assert rate == 24000
        assert len(samples) > 0 and rms(samples) > 1e-3, "200 with silence"
        return "audio"
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    message = body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
    assert isinstance(message, str) and len(message) > 10 and "Traceback" not in message
    return "refused"


def post_tts(base, text, language):
    response = requests.post(f"{base}/tts", json={"text": text, "language": language}, timeout=TIMEOUT)
    return check_http(response, lambda r: decode_audio(__import__("base64").b64decode(r.json()["audioContent"])))


def post_stream(base, text, language):
    response = requests.post(f"{base}/tts/stream", json={"text": text, "language": language, "format": "pcm"},
                             timeout=TIMEOUT)
    return check_http(response, lambda r: (np.frombuffer(r.content, "<i2").astype(np.float32) / 32768, 24000))


def post_openai(base, text, language):
    response = requests.post(f"{base}/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": "alloy",
                                                              "language": language, "response_format": "wav"},
                             timeout=TIMEOUT)
    return check_http(response, lambda r: decode_audio(r.content))


def ws_json(base, text, language):
    """The browser's JSON WebSocket: text in pieces of 40 characters, then end."""
    url = base.replace("http://", "ws://") + f"/ws/tts?language={language}"
    with connect(url, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for start in range(0, len(text), 40):
            ws.send(json.dumps({"type": "text", "text": text[start:start + 40]}))
        ws.send(json.dumps({"type": "end"}))
        pcm, events = json_session(until_closed(ws, TIMEOUT))
    kinds = [e["type"] for e in events]
    assert "done" in kinds or "error" in kinds, f"the session neither finished nor failed: {kinds}"
    if "error" in kinds:
        message = next(e["message"] for e in events if e["type"] == "error")
        assert len(message) > 10 and "Traceback" not in message
        return "refused"
    samples = np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / 32768
    if len(samples) == 0:
        return "nothing"  # nothing speakable: the session ends cleanly without audio
    assert rms(samples) > 1e-3
    return "audio"


def ws_kyutai(base, text, language):
    """Kyutai's protocol, word by word as its client sends them (MessagePack cannot carry a lone surrogate)."""
    url = base.replace("http://", "ws://") + f"/api/tts_streaming?format=PcmMessagePack&language={language}"
    messages = []
    deadline = time.monotonic() + TIMEOUT
    with connect(url, open_timeout=30) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30))["type"] == "Ready"
        for word in text.split() or [text]:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        ws.send(msgpack.packb({"type": "Eos"}))
        try:
            while time.monotonic() < deadline:
                messages.append(msgpack.unpackb(ws.recv(timeout=max(deadline - time.monotonic(), 0.1))))
        except ConnectionClosed:
            pass
    errors = [m for m in messages if m["type"] == "Error"]
    if errors:
        assert len(errors[0]["message"]) > 10
        return "refused"
    chunks = [np.asarray(m["pcm"], dtype=np.float32) for m in messages if m["type"] == "Audio"]
    if not chunks:
        return "nothing"
    assert rms(np.concatenate(chunks)) > 1e-3
    return "audio"


def neighbour_http(base, language):
    response = requests.post(f"{base}/tts", json={"text": NEIGHBOUR[language], "language": language},
                             timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    samples, rate = decode_audio(__import__("base64").b64decode(body["audioContent"]))
    assert rate == 24000 and len(samples) > rate // 2 and rms(samples) > 1e-3
    return body


def neighbour_ws(base, language):
    assert ws_json(base, NEIGHBOUR[language], language) == "audio"


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_odd_text_gets_audio_or_a_clear_4xx_and_spares_the_neighbours(live_both, engine, case):
    base, app = live_both
    language = ENGINES[engine]
    text = CORPUS[case]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        neighbours = [pool.submit(neighbour_http, base, language), pool.submit(neighbour_ws, base, language)]
        surfaces = {"tts": pool.submit(post_tts, base, text, language),
                    "stream": pool.submit(post_stream, base, text, language),
                    "openai": pool.submit(post_openai, base, text, language),
                    "ws": pool.submit(ws_json, base, text, language)}
        if "\ud800" not in text:
            surfaces["kyutai"] = pool.submit(ws_kyutai, base, text, language)
        outcomes = {name: future.result(timeout=TIMEOUT) for name, future in surfaces.items()}
        for future in neighbours:
            future.result(timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT
    # The same text gets the same verdict on every HTTP surface.
    assert len({outcomes["tts"], outcomes["stream"], outcomes["openai"]}) == 1, outcomes
    stats = app.extensions["tts_service"].router.routes[language].scheduler.stats
    assert stats.failed == 0, "a step failed: some input reached the worker in a form that raises"


@pytest.mark.parametrize("case, language, expected", [
    ("closing_quote", "es", "audio"),
    ("guillemet_after_sentence", "es", "audio"),
    ("french_guillemets", "es", "audio"),
    ("angle_brackets", "en", "audio"),
    ("inverted_marks_alone", "es", "refused"),
    ("only_punctuation", "en", "refused"),
    ("only_emoji", "es", "refused"),
    ("lone_surrogate", "es", "refused"),
])
def test_ordinary_text_is_spoken_and_nothing_speakable_is_a_400_that_says_so(live_both, case, language, expected):
    base, _ = live_both
    response = requests.post(f"{base}/tts", json={"text": CORPUS[case], "language": language}, timeout=TIMEOUT)
    assert ("audio" if response.status_code == 200 else "refused") == expected, response.text[:300]
    if expected == "refused":
        assert response.status_code == 400
        message = response.json()["error"]
        assert "speakable" in message or "Unicode" in message, message
