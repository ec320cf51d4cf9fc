"""Text in while audio goes out: Kyutai's WebSocket protocol and this service's JSON variant.

The Kyutai client here is written from the protocol (websockets + msgpack), not from our code.
"""

from __future__ import annotations

import json
import time

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WORDS = "Hello , this is a sentence that arrives one word at a time from a language model .".split()


@pytest.fixture
def ws_base(live):
    def start(**overrides):
        base, app = live(**overrides)
        return base.replace("http://", "ws://"), app
    return start


def receive_all(ws, timeout=60):
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = ws.recv(timeout=max(deadline - time.monotonic(), 0.1))
            messages.append((time.monotonic(), msgpack.unpackb(data) if isinstance(data, bytes) else data))
    except ConnectionClosed:
        pass
    return messages


def test_kyutai_client_receives_audio_before_eos_and_ordered_words(ws_base):
    base, _ = ws_base()
    with connect(f"{base}/api/tts_streaming?format=PcmMessagePack") as ws:
        assert msgpack.unpackb(ws.recv(timeout=30)) == {"type": "Ready"}
        received = []
        audio_before_eos = False
        for word in WORDS:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
            time.sleep(0.05)
            try:
                while True:
                    received.append(msgpack.unpackb(ws.recv(timeout=0.01)))
            except TimeoutError:
                pass
        audio_before_eos = any(m["type"] == "Audio" for m in received)
        ws.send(msgpack.packb({"type": "Eos"}))
        received += [m for _, m in receive_all(ws)]
    assert audio_before_eos, "no audio arrived before Eos"
    assert not [m for m in received if m["type"] == "Error"]
    texts = [m for m in received if m["type"] == "Text"]
    assert [m["text"] for m in texts] == WORDS
    starts = [m["start_s"] for m in texts]
    assert starts == sorted(starts) and all(m["start_s"] <= m["stop_s"] for m in texts)
    pcm = np.concatenate([np.asarray(m["pcm"], dtype=np.float32) for m in received if m["type"] == "Audio"])
    assert len(pcm) / 24000 >= texts[-1]["start_s"]
    assert float(np.sqrt(np.mean(pcm ** 2))) > 1e-3


def test_generation_waits_for_words_instead_of_inventing_them(ws_base):
    base, _ = ws_base()
    with connect(f"{base}/api/tts_streaming") as ws:
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
        later = [m for _, m in receive_all(ws)]
    spoken += [m["text"] for m in later if m["type"] == "Text"]
    assert spoken == WORDS


@pytest.mark.parametrize("messages, error", [
    ([msgpack.packb({"type": "Dance"})], "unknown message type"),
    ([b"\xc1\xc1\xc1"], "malformed MessagePack"),
    ([msgpack.packb({"type": "Text", "text": "Hi"}), msgpack.packb({"type": "Eos"}),
      msgpack.packb({"type": "Text", "text": "again"})], "after the end"),
    ([msgpack.packb({"type": "Voice", "embeddings": [0.1, 0.2], "shape": [1, 2, 1]})], "voice embedding"),
])
def test_bad_messages_get_an_error_and_a_clean_close(ws_base, messages, error):
    base, app = ws_base()
    with connect(f"{base}/api/tts_streaming") as ws:
        ws.recv(timeout=30)
        for message in messages:
            ws.send(message)
        received = [m for _, m in receive_all(ws, timeout=30)]
    errors = [m for m in received if isinstance(m, dict) and m.get("type") == "Error"]
    assert errors and error in errors[0]["message"]
    scheduler = app.extensions["tts_router"].schedulers["dsm"]
    deadline = time.monotonic() + 10
    while scheduler.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.active == 0, "a slot stayed stuck"


def test_bad_key_and_unknown_voice_are_errors(ws_base):
    base, _ = ws_base(api_key="k3y")
    with connect(f"{base}/api/tts_streaming", additional_headers={"kyutai-api-key": "wrong"}) as ws:
        message = msgpack.unpackb(ws.recv(timeout=30))
    assert message["type"] == "Error" and "api key" in message["message"]
    with connect(f"{base}/api/tts_streaming?voice=nobody", additional_headers={"kyutai-api-key": "k3y"}) as ws:
        message = msgpack.unpackb(ws.recv(timeout=30))
    assert message["type"] == "Error" and "Unknown voice" in message["message"]
    with connect(f"{base}/api/tts_streaming", additional_headers={"kyutai-api-key": "k3y"}) as ws:
        assert msgpack.unpackb(ws.recv(timeout=30))["type"] == "Ready"


def test_disconnect_mid_stream_frees_the_slot(ws_base):
    base, app = ws_base()
    with connect(f"{base}/api/tts_streaming") as ws:
        ws.recv(timeout=30)
        for word in WORDS * 3:
            ws.send(msgpack.packb({"type": "Text", "text": word}))
        ws.send(msgpack.packb({"type": "Eos"}))
        while msgpack.unpackb(ws.recv(timeout=30))["type"] != "Audio":
            pass
    scheduler = app.extensions["tts_router"].schedulers["dsm"]
    deadline = time.monotonic() + 20
    while scheduler.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.active == 0
    assert scheduler.stats.cancelled >= 1


def test_json_variant_streams_pcm_and_words(ws_base):
    base, _ = ws_base()
    with connect(f"{base}/ws/tts?language=en") as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["sample_rate"] == 24000
        for word in WORDS:
            ws.send(json.dumps({"type": "text", "text": word + " "}))
        ws.send(json.dumps({"type": "end"}))
        pcm, events = b"", []
        try:
            while True:
                data = ws.recv(timeout=60)
                if isinstance(data, bytes):
                    pcm += data
                else:
                    events.append(json.loads(data))
        except ConnectionClosed:
            pass
    assert [e["word"] for e in events if e["type"] == "word"] == WORDS
    done = events[-1]
    assert done["type"] == "done"
    assert done["duration"] == pytest.approx(len(pcm) / 2 / 24000, abs=1e-3)
