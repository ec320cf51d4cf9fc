"""Kyutai moshi-server's TTS protocol as its clients use it: every format, auth, capacity, Pocket TTS, pauses.

The client here is written from the protocol (websockets + msgpack; Ogg decoded with PyAV), not
from the service's code. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import struct
import time

import av
import msgpack
import numpy as np
import pytest
import requests
import soundfile as sf
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from helpers import decode_wav, dsm_only, rms, running_app, served, until_closed, wait_until

def connect(url: str, **options):
    """A client that keeps reading (and so answering pings) while the test is busy sending, as a
    real client's receive task does; websockets otherwise stops reading once 16 frames wait."""
    return ws_connect(url, max_queue=None, close_timeout=3, **options)


KEY = "k3y"
AUTH = {"kyutai-api-key": KEY}
RATE = 24000
FRAME = 1920


@pytest.fixture(scope="module")
def dsm_server(tiny_env):
    """DSM with two slots: one may go to sessions, one stays for HTTP requests."""
    with running_app(dsm_only(tiny_env), api_key=KEY, max_batch_size=2, rate_limit="",
                     cache_bytes=0, ws_idle_timeout=120) as app, served(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def cpu_server(tiny_env):
    """A CPU server as routed by default: every language on Pocket TTS, no DSM at all."""
    env = {**tiny_env, "TTS_POCKET_LANGUAGES": "es,en", "TTS_DEFAULT_LANGUAGE": "es"}
    with running_app(env, rate_limit="", cache_bytes=0, session_clause_pause=0.3) as app:
        assert all(route.key != "dsm" for route in app.extensions["tts_service"].router.routes.values())
        with served(app) as base:
            yield base, app


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/api/tts_streaming" + (f"?{query}" if query else "")


def unpack(messages: list) -> list[dict]:
    return [msgpack.unpackb(m) for m in messages]


def speak(base: str, words: list[str], query: str = "format=PcmMessagePack", headers=AUTH, eos=None) -> list:
    with connect(ws_url(base, query), additional_headers=headers) as ws:
        # Only the MessagePack formats have a Ready message to wait for.
        messages = [ws.recv(timeout=30)] if "MessagePack" in query else []
        for word in words:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        ws.send(eos if eos is not None else msgpack.packb({"type": "Eos"}))
        return messages + until_closed(ws)


def decode_ogg(data: bytes) -> tuple[np.ndarray, int]:
    """Ogg Opus bytes to float samples at the stream's own rate (OpusHead's input rate), with PyAV."""
    head = data.index(b"OpusHead")
    input_rate = struct.unpack("<I", data[head + 12:head + 16])[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=input_rate)
    chunks = []
    with av.open(io.BytesIO(data), format="ogg") as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks), input_rate


def wait_free(app, timeout: float = 30) -> None:
    slots = app.extensions["tts_service"].slots
    wait_until(lambda: slots is None or not any(slots.used(k) for k in app.extensions["tts_service"].router.schedulers),
               timeout, step=0.05)


def longest_silence(pcm: np.ndarray, threshold: float = 1e-4) -> float:
    quiet = np.abs(pcm) < threshold
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best / RATE


WORDS = "Hello world .".split()


# -- formats -----------------------------------------------------------------------------------
def test_pcm_messagepack_ready_frames_and_words(dsm_server):
    base, app = dsm_server
    wait_free(app)
    messages = unpack(speak(base, WORDS))
    assert messages[0] == {"type": "Ready"}
    frames = [m["pcm"] for m in messages if m["type"] == "Audio"]
    assert frames and all(len(f) == FRAME for f in frames)
    pcm = np.concatenate([np.asarray(f, dtype=np.float32) for f in frames])
    assert rms(pcm) > 1e-3
    texts = [m for m in messages if m["type"] == "Text"]
    assert [m["text"] for m in texts] == WORDS
    assert all(m["start_s"] <= m["stop_s"] <= len(pcm) / RATE + 1e-3 for m in texts)


def test_raw_pcm_is_float32_frames_only(dsm_server):
    base, app = dsm_server
    wait_free(app)
    messages = speak(base, WORDS, query="format=Pcm")
    assert all(isinstance(m, bytes) and len(m) == FRAME * 4 for m in messages)
    pcm = np.frombuffer(b"".join(messages), dtype="<f4")
    assert len(pcm) >= RATE and rms(pcm) > 1e-3


def test_ogg_opus_is_the_default_format_and_decodes_at_24_khz(dsm_server):
    base, app = dsm_server
    wait_free(app)
    messages = speak(base, WORDS, query="")
    assert all(isinstance(m, bytes) for m in messages)
    assert messages[0].startswith(b"OggS") and b"OpusHead" in messages[0]
    pcm, rate = decode_ogg(b"".join(messages))
    assert rate == RATE
    pages = len(messages) - 1
    assert len(pcm) >= RATE and rms(pcm) > 1e-3
    assert abs(len(pcm) - pages * FRAME) <= 2 * FRAME, "decoded length differs from the frames sent"


def test_ogg_opus_messagepack_sends_the_header_first(dsm_server):
    base, app = dsm_server
    wait_free(app)
    messages = unpack(speak(base, WORDS, query="format=OggOpusMessagePack"))
    assert messages[0] == {"type": "Ready"}
    oggs = [m["data"] for m in messages if m["type"] == "OggOpus"]
    assert b"OpusHead" in oggs[0] and messages[1]["type"] == "OggOpus"
    assert [m["text"] for m in messages if m["type"] == "Text"] == WORDS
    pcm, rate = decode_ogg(b"".join(oggs))
    assert rate == RATE and len(pcm) >= RATE and rms(pcm) > 1e-3


def test_bad_format_or_parameter_is_a_400_before_the_upgrade(dsm_server):
    base, _ = dsm_server
    for query in ("format=Wav", "seed=abc", "temperature=hot"):
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(base, query), additional_headers=AUTH, open_timeout=10)
        assert caught.value.response.status_code == 400
    # moshi-server's Rust query parameters are accepted
    query = "format=PcmMessagePack&seed=42&temperature=0.8&top_k=250&cfg_alpha=1.5&max_seq_len=100"
    with connect(ws_url(base, query), additional_headers=AUTH) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}


# -- auth, text frames, end of stream, voices ---------------------------------------------------
def test_wrong_key_is_401_before_the_upgrade_and_auth_id_works(dsm_server):
    base, app = dsm_server
    wait_free(app)
    for headers, query in (({"kyutai-api-key": "wrong"}, ""), ({}, ""), ({}, "auth_id=wrong")):
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(base, query), additional_headers=headers, open_timeout=10)
        assert caught.value.response.status_code == 401
    with connect(ws_url(base, f"auth_id={KEY}&format=PcmMessagePack")) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}


def test_text_frames_and_the_zero_byte_end(dsm_server):
    base, app = dsm_server
    wait_free(app)
    with connect(ws_url(base, "format=PcmMessagePack"), additional_headers=AUTH) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        ws.send("Hello world")
        ws.send("again .")
        ws.send(b"\0")
        messages = unpack(until_closed(ws))
    assert [m["text"] for m in messages if m["type"] == "Text"] == ["Hello", "world", "again", "."]
    assert sum(len(m["pcm"]) for m in messages if m["type"] == "Audio") >= RATE


def test_empty_eos_closes_at_once(dsm_server):
    base, app = dsm_server
    wait_free(app)
    with connect(ws_url(base, "format=PcmMessagePack"), additional_headers=AUTH) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        started = time.monotonic()
        ws.send(msgpack.packb({"type": "Eos"}))
        rest = until_closed(ws, timeout=10)
        assert time.monotonic() - started < 5
    assert rest == []


def test_unknown_voice_falls_back_and_a_late_voice_is_ignored(dsm_server, caplog):
    base, app = dsm_server
    wait_free(app)
    with connect(ws_url(base, "format=PcmMessagePack&voice=nobody/none.wav"), additional_headers=AUTH) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        ws.send(msgpack.packb({"type": "Text", "text": "Hello"}))
        ws.send(msgpack.packb({"type": "Voice", "embeddings": [0.5] * 8, "shape": [1, 8, 1]}))
        ws.send(msgpack.packb({"type": "Text", "text": "world ."}))
        ws.send(msgpack.packb({"type": "Eos"}))
        messages = unpack(until_closed(ws))
    assert not [m for m in messages if m["type"] == "Error"]
    assert [m["text"] for m in messages if m["type"] == "Text"] == ["Hello", "world", "."]
    assert any("using the default voice" in r.getMessage() for r in caplog.records)


# -- capacity -------------------------------------------------------------------------------
def test_capacity_error_before_ready_while_http_still_gets_full_audio(dsm_server):
    base, app = dsm_server
    wait_free(app)
    info = requests.get(f"{base}/api/modules_info", headers=AUTH, timeout=10).json()
    assert info[0]["total_slots"] == "1" and info[0]["used_slots"] == "0"
    with connect(ws_url(base, "format=PcmMessagePack"), additional_headers=AUTH) as holder:
        assert msgpack.unpackb(holder.recv(timeout=30)) == {"type": "Ready"}
        holder.send(msgpack.packb({"type": "Text", "text": "Hello"}))  # then silence: it holds its slot
        assert requests.get(f"{base}/api/modules_info", headers=AUTH, timeout=10).json()[0]["used_slots"] == "1"
        with connect(ws_url(base, "format=PcmMessagePack"), additional_headers=AUTH) as refused:
            message = msgpack.unpackb(refused.recv(timeout=30))
            assert message == {"type": "Error", "message": "no free channels"}
            assert until_closed(refused, timeout=30) == []
        response = requests.post(f"{base}/tts", json={"text": "Hello there , neighbour .", "language": "en"},
                                 headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        assert response.status_code == 200
        audio, rate = decode_wav(response.json()["audioContent"])
        assert rate == RATE and len(audio) > RATE and rms(audio) > 1e-3
        holder.send(msgpack.packb({"type": "Eos"}))
        assert [m for m in unpack(until_closed(holder)) if m["type"] == "Audio"]
    wait_free(app)
    with connect(ws_url(base, "format=PcmMessagePack"), additional_headers=AUTH) as again:
        assert msgpack.unpackb(again.recv(timeout=30)) == {"type": "Ready"}


def test_modules_info_needs_the_key(dsm_server):
    base, _ = dsm_server
    assert requests.get(f"{base}/api/modules_info", timeout=10).status_code == 401


# -- the POST form -----------------------------------------------------------------------------
def test_post_form_streams_a_wav(dsm_server):
    base, app = dsm_server
    wait_free(app)
    url = f"{base}/api/tts_streaming"
    assert requests.post(url, json={"text": "Hello"}, timeout=30).status_code == 401
    assert requests.post(url, json={"voice": "x"}, headers=AUTH, timeout=30).status_code == 400
    response = requests.post(url, json={"text": "Hello world , this is a post .", "voice": "nobody/x.wav"},
                             headers=AUTH, timeout=120)
    assert response.status_code == 200 and response.headers["Content-Type"] == "audio/wav"
    assert response.content[:4] == b"RIFF"
    audio, rate = sf.read(io.BytesIO(response.content[44:]), format="RAW", subtype="PCM_16",
                          samplerate=RATE, channels=1, dtype="float32")
    assert rate == RATE and len(audio) > RATE and rms(audio) > 1e-3


# -- pauses ----------------------------------------------------------------------------------
def test_a_break_in_a_dsm_session_is_silence_of_that_length(dsm_server):
    base, app = dsm_server
    wait_free(app)
    messages = unpack(speak(base, ["Hello", "world", '<break time="1.5s"/>', "again", "."]))
    pcm = np.concatenate([np.asarray(m["pcm"], dtype=np.float32) for m in messages if m["type"] == "Audio"])
    assert abs(longest_silence(pcm) - 1.5) <= 0.08
    assert [m["text"] for m in messages if m["type"] == "Text"] == ["Hello", "world", "again", "."]


def test_a_break_in_tts_is_silence_of_that_length(dsm_server):
    base, _ = dsm_server
    response = requests.post(f"{base}/tts", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                             json={"text": 'Hello **world**. <break time="1.2s"/> Again.', "language": "en"})
    assert response.status_code == 200
    audio, _ = decode_wav(response.json()["audioContent"])
    assert abs(longest_silence(audio) - 1.2) <= 0.08


# -- Pocket TTS: a CPU server -----------------------------------------------------------------
def test_cpu_server_serves_kyutai_clients_with_pocket_tts(cpu_server):
    base, app = cpu_server
    info = requests.get(f"{base}/api/modules_info", timeout=10).json()
    assert {m["script"] for m in info} == {"pocket-es", "pocket-en"}
    # Kyutai's client names a DSM repository voice: English, spoken by Pocket TTS's default voice.
    messages = unpack(speak(base, "Hello world , this is a test .".split(), headers={},
                            query="format=PcmMessagePack&voice=expresso/ex03-ex01_happy_001_channel1_334s.wav"))
    assert messages[0] == {"type": "Ready"}
    frames = [m["pcm"] for m in messages if m["type"] == "Audio"]
    assert frames and all(len(f) == FRAME for f in frames)
    pcm = np.concatenate([np.asarray(f, dtype=np.float32) for f in frames])
    assert rms(pcm) > 1e-3
    texts = [m for m in messages if m["type"] == "Text"]
    assert [m["text"] for m in texts] == "Hello world , this is a test .".split()
    assert [m["start_s"] for m in texts] == sorted(m["start_s"] for m in texts)
    assert texts[-1]["stop_s"] <= len(pcm) / RATE + 1e-3


def test_pocket_session_speaks_each_clause_before_the_end(cpu_server):
    base, _ = cpu_server
    with connect(ws_url(base, "format=PcmMessagePack&language=es")) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        for word in "Hola amigo .".split():
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        first = msgpack.unpackb(ws.recv(timeout=60))  # the clause ended: audio before any Eos
        assert first["type"] == "Audio"
        ws.send(msgpack.packb({"type": "Text", "text": "Sin punto"}))
        time.sleep(1.0)  # longer than the clause pause: spoken without an end mark
        got = unpack(collect_for(ws, 1.0))
        ws.send(msgpack.packb({"type": "Eos"}))
        got += unpack(until_closed(ws))
    assert "Sin" in [m["text"] for m in got if m["type"] == "Text"]


def collect_for(ws, seconds: float) -> list:
    out = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            out.append(ws.recv(timeout=max(deadline - time.monotonic(), 0.05)))
    except TimeoutError:
        pass
    return out


@pytest.mark.parametrize("asked", [0.5, 1.5])
def test_a_break_in_a_pocket_session_is_silence_of_that_length(cpu_server, asked):
    base, _ = cpu_server
    text = f'Hola amigo. <break time="{asked}s"/> Adiós amigo.'
    messages = unpack(speak(base, text.split(" "), headers={}, query="format=PcmMessagePack&language=es"))
    pcm = np.concatenate([np.asarray(m["pcm"], dtype=np.float32) for m in messages if m["type"] == "Audio"])
    assert abs(longest_silence(pcm) - asked) <= 0.08


def test_breaks_on_pocket_over_http_are_silence(cpu_server):
    base, _ = cpu_server
    response = requests.post(f"{base}/tts", timeout=120, json={
        "text": 'Hola. <break time="1s"/> Adiós. <break time="oops"/> Fin.', "language": "es"})
    assert response.status_code == 200
    audio, rate = decode_wav(response.json()["audioContent"])
    assert rate == RATE and abs(longest_silence(audio) - 1.0) <= 0.08


def test_neighbours_get_full_audio_while_a_pocket_session_waits(cpu_server):
    base, app = cpu_server
    with connect(ws_url(base, "format=PcmMessagePack&language=es")) as idle:
        assert msgpack.unpackb(idle.recv(timeout=30)) == {"type": "Ready"}
        idle.send(msgpack.packb({"type": "Text", "text": "Hola"}))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            http = pool.submit(requests.post, f"{base}/tts", json={"text": "Hola, vecino.", "language": "es"},
                               timeout=120)
            other = pool.submit(speak, base, "Buenos días .".split(), "format=PcmMessagePack&language=es", {})
            body = http.result(timeout=150).json()
            messages = unpack(other.result(timeout=150))
        audio, _ = decode_wav(body["audioContent"])
        assert len(audio) > RATE // 4 and rms(audio) > 1e-3
        assert sum(len(m["pcm"]) for m in messages if m["type"] == "Audio") > RATE // 4


def test_openai_speech_and_the_json_socket_pause_on_pocket(cpu_server):
    base, _ = cpu_server
    response = requests.post(f"{base}/v1/audio/speech", timeout=120, json={
        "model": "tts-1", "voice": "alloy", "language": "es", "response_format": "wav",
        "input": 'Hola. <break time="800ms"/> Adiós.'})
    assert response.status_code == 200
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == RATE and abs(longest_silence(audio) - 0.8) <= 0.08
    with connect(base.replace("http://", "ws://") + "/ws/tts?language=es") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": 'Hola amigo. <break time="1s"/> Adiós'}))
        ws.send(json.dumps({"type": "text", "text": " amigo."}))
        ws.send(json.dumps({"type": "end"}))
        pcm = b"".join(m for m in until_closed(ws) if isinstance(m, bytes))
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767
    assert abs(longest_silence(samples) - 1.0) <= 0.08


@pytest.mark.parametrize("text, parts", [
    ('Hola. <break time="1.5s"/> Adiós.', [("Hola.", 1.5), ("Adiós.", 0.0)]),
    ('a <break time="40s"/> b', [("a", 10.0), ("b", 0.0)]),  # moshi-server's cap
    ('a <break time="1x5s"/> b <BREAK TIME=\'250ms\' /> c', [("a b", 0.25), ("c", 0.0)]),
    ('<break time="1s"/><break time="2s"/>end', [("", 3.0), ("end", 0.0)]),
    ("no tags", [("no tags", 0.0)]),
])
def test_pause_tags_split_text_capped_and_malformed_ones_dropped(text, parts):
    from tts_service.text.pauses import split_breaks

    assert [(" ".join(words.split()), pause) for words, pause in split_breaks(text)] == parts


def test_text_cleaning_keeps_pause_tags():
    from tts_service.text.checks import prepare_text

    spoken = prepare_text('**Hola** :) <break time="2s"/> [mundo](http://x.y) <break time="oops"/> fin', "es", True)
    assert '<break time="2.00s"/>' in spoken and "oops" not in spoken and "**" not in spoken
    assert "break" not in spoken.replace('<break time="2.00s"/>', "")


@pytest.mark.parametrize("text, held", [
    ("hi <break time=", 3), ("hi <br", 3), ("hi <", 3),  # may still become a pause tag
    ('hi <break time="1s"/>', -1), ("3 < 5 apples", -1), ("a <b> c", -1), ("x <" + "y" * 80, -1),
])
def test_streamed_text_holds_back_only_a_pause_tag_still_arriving(text, held):
    from tts_service.text.pauses import unfinished_tag

    assert unfinished_tag(text) == held


@pytest.mark.parametrize("server, language, path, field", [
    ("cpu_server", "es", "/tts/stream", "text"), ("dsm_server", "en", "/tts/stream", "text"),
    ("cpu_server", "es", "/v1/audio/speech", "input")])
def test_streamed_http_pauses_exactly_on_every_engine(request, server, language, path, field):
    base, _ = request.getfixturevalue(server)
    body = {field: 'Hola amigo. <break time="1.3s"/> Adiós amigo.', "language": language}
    body.update({"format": "pcm"} if path == "/tts/stream" else
                {"model": "tts-1", "voice": "alloy", "response_format": "pcm", "stream_format": "audio"})
    response = requests.post(f"{base}{path}", json=body, timeout=120,
                             headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    samples = np.frombuffer(response.content, dtype="<i2").astype(np.float32) / 32767
    assert len(samples) > 1.5 * RATE and rms(samples) > 1e-3
    assert abs(longest_silence(samples) - 1.3) <= 0.08
