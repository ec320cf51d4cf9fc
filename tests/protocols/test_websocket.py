"""Text in while audio goes out over WebSocket: streaming behaviour, the JSON variant, and the limits.

The clients here are written from the protocols (websockets + msgpack, or a raw socket), not from
the service's code. Every misbehaving client has a neighbour that must still get its full audio.
"""

from __future__ import annotations

import base64
import contextlib
import concurrent.futures
import json
import os
import socket
import time

import msgpack
import numpy as np
import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from helpers import decode_wav, dsm_only, json_session, rms, running_app, served, until_closed, wait_until

def connect(url: str, **options):
    """A client that keeps reading (and so answering pings) while the test is busy sending, as a
    real client's receive task does; websockets otherwise stops reading once 16 frames wait."""
    return ws_connect(url, max_queue=None, close_timeout=3, **options)


WORDS = "Hello , this is a sentence that arrives one word at a time .".split()
NEIGHBOUR = "Hello neighbour , you still get your audio .".split()


@pytest.fixture(scope="module")
def server(tiny_env):
    """Small limits so that each one is quick to reach: 64 KiB messages, 300 characters per session,
    pings every 2 s and an idle close after 3 s."""
    with running_app(dsm_only(tiny_env), max_batch_size=4, max_body_bytes=65536, session_max_chars=300,
                     ws_ping_interval=2.0, ws_idle_timeout=3.0, rate_limit="",
                     cache_bytes=0) as app, served(app) as base:
        yield base.replace("http://", "ws://"), base, app


def receive_all(ws, timeout=180):
    return [msgpack.unpackb(data) if isinstance(data, bytes) else data for data in until_closed(ws, timeout)]


def kyutai(base: str, words: list[str], pause: float = 0.0) -> list[dict]:
    """One whole Kyutai session: Ready, the words (optionally spaced), Eos, everything until the close."""
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        for word in words:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
            time.sleep(pause)
        ws.send(msgpack.packb({"type": "Eos"}))
        return receive_all(ws)


def assert_full_audio(messages: list[dict], words: list[str]) -> None:
    assert not [m for m in messages if m["type"] == "Error"], messages
    assert [m["text"] for m in messages if m["type"] == "Text"] == words
    pcm = np.concatenate([np.asarray(m["pcm"], dtype=np.float32) for m in messages if m["type"] == "Audio"])
    assert len(pcm) / 24000 >= [m for m in messages if m["type"] == "Text"][-1]["start_s"]
    assert rms(pcm) > 1e-3


def wait_idle(app, timeout: float = 30) -> None:
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    slots = app.extensions["tts_service"].slots
    wait_until(lambda: not (scheduler.active or (slots is not None and slots.used("dsm"))), timeout, step=0.05)
    assert scheduler.active == 0, "a slot stayed stuck"


# -- streaming ---------------------------------------------------------------------------------
def test_kyutai_client_receives_audio_before_eos_and_ordered_words(server):
    base, _, app = server
    wait_idle(app)
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        received = []
        for word in WORDS:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
            time.sleep(0.05)
            try:
                while True:
                    received.append(msgpack.unpackb(ws.recv(timeout=0.01)))
            except TimeoutError:
                pass
        deadline = time.monotonic() + 60
        while not any(m["type"] == "Audio" for m in received) and time.monotonic() < deadline:
            received.append(msgpack.unpackb(ws.recv(timeout=60)))  # words are known: audio comes without Eos
        audio_before_eos = any(m["type"] == "Audio" for m in received)
        ws.send(msgpack.packb({"type": "Eos"}))
        received += receive_all(ws)
    assert audio_before_eos, "no audio arrived before Eos"
    assert_full_audio(received, WORDS)
    texts = [m for m in received if m["type"] == "Text"]
    starts = [m["start_s"] for m in texts]
    assert starts == sorted(starts) and all(m["start_s"] <= m["stop_s"] for m in texts)


def test_generation_waits_for_words_instead_of_inventing_them(server):
    base, _, app = server
    wait_idle(app)
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        ws.recv(timeout=30)
        for word in WORDS[:4]:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        time.sleep(1.5)
        early = []
        try:
            while True:
                early.append(msgpack.unpackb(ws.recv(timeout=0.2)))
        except TimeoutError:
            pass
        spoken = [m["text"] for m in early if m["type"] == "Text"]
        assert len(spoken) <= 2, "spoke words it could not know yet"
        for word in WORDS[4:]:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        ws.send(msgpack.packb({"type": "Eos"}))
        later = receive_all(ws)
    spoken += [m["text"] for m in later if m["type"] == "Text"]
    assert spoken == WORDS


@pytest.mark.parametrize("messages, error", [
    ([msgpack.packb({"type": "Dance"})], "unknown message type"),
    ([b"\xc1\xc1\xc1"], "malformed MessagePack"),
    ([msgpack.packb([1, 2])], "must be a map"),
    ([msgpack.packb({"type": "Text", "text": 5})], "must be a string"),
    ([msgpack.packb({"type": "Text", "text": "Hi"}), msgpack.packb({"type": "Eos"}),
      msgpack.packb({"type": "Text", "text": "again"})], "after the end"),
])
def test_bad_messages_get_an_error_and_a_clean_close(server, messages, error):
    base, _, app = server
    wait_idle(app)
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        ws.recv(timeout=30)
        for message in messages:
            ws.send(message)
        received = receive_all(ws)
    errors = [m for m in received if isinstance(m, dict) and m.get("type") == "Error"]
    assert errors and error in errors[0]["message"]
    wait_idle(app)


def test_disconnect_mid_stream_frees_the_slot(server):
    base, _, app = server
    wait_idle(app)
    scheduler = app.extensions["tts_service"].router.schedulers["dsm"]
    cancelled = scheduler.stats.cancelled
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        ws.recv(timeout=30)
        for word in WORDS * 2:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        ws.send(msgpack.packb({"type": "Eos"}))
        while msgpack.unpackb(ws.recv(timeout=60))["type"] != "Audio":
            pass
    wait_idle(app)
    assert scheduler.stats.cancelled > cancelled


def test_a_slow_llm_is_not_cut_by_the_request_timeout(tiny_env):
    """Words over 9 s against a 4 s request timeout: a session's job times out only when idle."""
    with running_app(dsm_only(tiny_env), request_timeout=4.0, rate_limit="", cache_bytes=0) as app, \
            served(app) as base:
        words = "One two three four five six seven eight nine .".split()
        assert_full_audio(kyutai(base.replace("http://", "ws://"), words, pause=1.0), words)


# -- the JSON variant --------------------------------------------------------------------------
def test_json_variant_streams_pcm_and_words(server):
    base, _, app = server
    wait_idle(app)
    with connect(f"{base}/ws/tts?language=en") as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["sample_rate"] == 24000
        for word in WORDS:
            ws.send(json.dumps({"type": "text", "text": word + " "}))
        ws.send(json.dumps({"type": "end"}))
        pcm, events = json_session(until_closed(ws))
    assert [e["word"] for e in events if e["type"] == "word"] == WORDS
    done = events[-1]
    assert done["type"] == "done"
    assert done["duration"] == pytest.approx(len(pcm) / 2 / 24000, abs=1e-3)


@pytest.mark.parametrize("query, error", [
    ("language=xx", "not supported"),
    ("language=en&voice=nobody", "Unknown voice"),
])
def test_json_variant_refusals_are_in_protocol(server, query, error):
    base, _, _ = server
    with connect(f"{base}/ws/tts?{query}") as ws:
        message = json.loads(ws.recv(timeout=30))
    assert message["type"] == "error" and error in message["message"]


def test_json_variant_key_error_is_in_protocol(tiny_env):
    with running_app(dsm_only(tiny_env), api_key="k3y", rate_limit="") as app, served(app) as base:
        with connect(base.replace("http://", "ws://") + "/ws/tts?language=en&api_key=wrong") as ws:
            message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "error" and "API key" in message["message"]
        with connect(base.replace("http://", "ws://") + "/ws/tts?language=en&api_key=k3y") as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"


# -- limits, each with a neighbour that must still get its full audio ---------------------------
def with_neighbour(base: str, misbehave) -> object:
    """Run `misbehave()` while a well-behaved session speaks; return what misbehave returned."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        neighbour = pool.submit(kyutai, base, NEIGHBOUR, 0.05)
        outcome = pool.submit(misbehave)
        result = outcome.result(timeout=200)
        assert_full_audio(neighbour.result(timeout=200), NEIGHBOUR)
    return result


def test_an_oversized_message_closes_only_its_socket(server):
    base, _, app = server
    wait_idle(app)

    def oversized():
        with connect(f"{base}/api/tts_streaming?format=PcmMessagePack", max_size=None) as ws:
            ws.recv(timeout=30)
            ws.send(msgpack.packb({"type": "Text", "text": "a " * 40000}))  # 80 KB > the 64 KiB limit
            try:
                ws.recv(timeout=30)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None
        return "still open"

    assert with_neighbour(base, oversized) == 1009
    wait_idle(app)


def test_compression_is_never_negotiated(server):
    base, _, _ = server
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack", compression="deflate") as ws:
        ws.recv(timeout=30)
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert not ws.protocol.extensions


def test_the_session_text_limit_ends_that_session(server):
    base, _, app = server
    wait_idle(app)

    def chatty():
        with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
            ws.recv(timeout=30)
            try:
                for _ in range(60):  # 600 characters in small messages, against a limit of 300
                    ws.send(msgpack.packb({"type": "Text", "text": "abcdefghi"}))
            except ConnectionClosed:
                pass
            return [m for m in receive_all(ws) if m["type"] == "Error"]

    errors = with_neighbour(base, chatty)
    assert errors and "more than 300 characters" in errors[0]["message"]
    wait_idle(app)


def test_an_idle_session_is_closed_and_frees_its_slot(server):
    base, _, app = server
    wait_idle(app)

    def idle():
        with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
            ws.recv(timeout=30)
            ws.send(msgpack.packb({"type": "Text", "text": "Hello"}))
            started = time.monotonic()
            errors = [m for m in receive_all(ws, timeout=60) if m["type"] == "Error"]
            return errors, time.monotonic() - started

    errors, waited = with_neighbour(base, idle)
    assert errors and "no message for 3 s" in errors[0]["message"]
    assert 2.5 <= waited <= 30
    wait_idle(app)
    assert app.extensions["tts_service"].slots.used("dsm") == 0


def _raw_upgrade(http_base: str) -> socket.socket:
    host, port = http_base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/tts_streaming?format=PcmMessagePack HTTP/1.1\r\nHost: {host}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


def _masked(payload: bytes, opcode: int = 0x2) -> bytes:
    """A client frame (clients must mask), short payloads only."""
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    frames, at = [], 0
    while at + 2 <= len(body):
        size = body[at + 1] & 0x7F
        head = 2 + (2 if size == 126 else 8 if size == 127 else 0)
        if size >= 126:
            size = int.from_bytes(body[at + 2:at + head], "big")
        if at + head + size > len(body):
            break
        frames.append((body[at] & 0x0F, body[at + head:at + head + size]))
        at += head + size
    return frames


def test_server_pings_and_closes_a_client_that_never_answers(server):
    """A raw client that keeps sending words (so it is not idle) but never answers a ping."""
    _, http_base, app = server
    wait_idle(app)
    sock = _raw_upgrade(http_base)
    sock.settimeout(0.5)
    data, frames = b"", []
    started = sent = time.monotonic()
    try:
        while time.monotonic() - started < 20 and not any(op == 0x8 for op, _ in frames):
            if time.monotonic() - sent >= 0.5:  # a word every half second: never idle
                sock.sendall(_masked(msgpack.packb({"type": "Text", "text": "la"})))
                sent = time.monotonic()
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            data += chunk
            frames = _frames(data.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n" in data else []
    except (BrokenPipeError, ConnectionResetError):
        frames = _frames(data.split(b"\r\n\r\n", 1)[1])
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 101")
    opcodes = [op for op, _ in frames]
    assert 0x9 in opcodes, "no ping from the server"
    closes = [payload for op, payload in frames if op == 0x8]
    assert closes and int.from_bytes(closes[0][:2], "big") == 1008, "not closed for the missing pong"
    assert time.monotonic() - started < 15
    wait_idle(app)
    assert app.extensions["tts_service"].slots.used("dsm") == 0


def test_sessions_cannot_take_the_slots_http_needs(server):
    """Two sessions (the share of four slots) go quiet holding their slots; a third is refused, /tts still answers."""
    base, http_base, app = server
    wait_idle(app)
    with contextlib.ExitStack() as stack:
        holders = [stack.enter_context(connect(f"{base}/api/tts_streaming?format=PcmMessagePack")) for _ in range(2)]
        for ws in holders:
            assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
            ws.send(msgpack.packb({"type": "Text", "text": "Hello"}))
        with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as refused:
            assert msgpack.unpackb(refused.recv(timeout=30)) == {"type": "Error", "message": "no free channels"}
        started = time.monotonic()
        response = requests.post(f"{http_base}/tts", json={"text": "Hello there , neighbour .", "language": "en"},
                                 timeout=120)
        assert response.status_code == 200, response.text
        audio, rate = decode_wav(response.json()["audioContent"])
        assert rate == 24000 and len(audio) > 24000 and rms(audio) > 1e-3
        assert time.monotonic() - started < 60
    wait_idle(app)
