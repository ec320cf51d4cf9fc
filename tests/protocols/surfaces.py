"""One client per surface, each run the way that surface's users run it, each giving a `Verdict`.

A verdict is what the client could observe: speech (with its audio checked), a refusal as the
surface tells it (an HTTP status, a WebSocket close code, a JSON `code`, a Wyoming error code), or
a clean end without audio. The conformance suite compares it with the one expected answer.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import msgpack
import numpy as np
import requests
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
with warnings.catch_warnings():
    # wyoming.audio imports the standard library's audioop, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart
    from wyoming.event import async_read_event
    from wyoming.error import Error as WyomingError
    from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

RATE = 24000


@dataclass
class Verdict:
    outcome: str  # "speech", "refused" or "silent"
    signal: object = None  # how the surface said it: a status, a close code, an error code
    audio: np.ndarray | None = None

    def __repr__(self) -> str:
        seconds = f" {len(self.audio) / RATE:.2f}s" if self.audio is not None else ""
        return f"Verdict({self.outcome} {self.signal!r}{seconds})"


def _speech_or_silent(audio: np.ndarray, signal=None) -> Verdict:
    return Verdict("speech" if len(audio) else "silent", signal, audio)


def _pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


class Surface:
    name = ""
    streamed_text = False  # the client sends text as it is written (a clean end without audio may stand for a refusal)

    def __init__(self, base: str, wyoming_port: int):
        self.base = base
        self.ws_base = "ws" + base[len("http"):]
        self.wyoming_port = wyoming_port

    def speak(self, text: str, language: str | None, voice: str | None, pieces: list[str] | None = None) -> Verdict:
        raise NotImplementedError

    def leave(self, text: str, language: str) -> None:
        """Start a long answer, take its first audio, and go away."""
        raise NotImplementedError


class Tts(Surface):
    name = "POST /tts"
    path = "/tts"

    def body(self, text, language, voice) -> str:
        fields = {"text": text, "language": language, "voice": voice}
        return json.dumps({k: v for k, v in fields.items() if v is not None})

    def post(self, text, language, voice, stream=False) -> requests.Response:
        return requests.post(self.base + self.path, data=self.body(text, language, voice),
                             headers={"Content-Type": "application/json"}, timeout=180, stream=stream)

    def speak(self, text, language, voice, pieces=None) -> Verdict:
        response = self.post(text, language, voice)
        if response.status_code != 200:
            assert response.headers["Content-Type"].startswith("application/json")
            assert "Traceback" not in response.text
            return Verdict("refused", response.status_code)
        return _speech_or_silent(self.audio(response), 200)

    def audio(self, response) -> np.ndarray:
        samples, rate = sf.read(io.BytesIO(base64.b64decode(response.json()["audioContent"])), dtype="float32")
        assert rate == RATE
        return samples

    def leave(self, text, language) -> None:
        # A whole-text answer: the client hangs up while it is being generated.
        address = urlsplit(self.base)
        with socket.create_connection((address.hostname, address.port)) as sock:
            body = self.body(text, language, None).encode()
            sock.sendall(f"POST {self.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.5)


class TtsStream(Tts):
    name = "POST /tts/stream"
    path = "/tts/stream"

    def audio(self, response) -> np.ndarray:
        assert response.headers["X-Sample-Rate"] == str(RATE)
        return _pcm16(response.content[44:])

    def leave(self, text, language) -> None:
        with self.post(text, language, None, stream=True) as response:
            assert response.status_code == 200
            next(response.iter_content(4096))


class OpenAI(Tts):
    name = "POST /v1/audio/speech"
    path = "/v1/audio/speech"

    def body(self, text, language, voice) -> str:
        fields = {"model": "tts-1", "input": text, "language": language, "voice": voice, "response_format": "wav"}
        return json.dumps({k: v for k, v in fields.items() if v is not None})

    def audio(self, response) -> np.ndarray:
        samples, rate = sf.read(io.BytesIO(response.content), dtype="float32")
        assert rate == RATE
        return samples


class KyutaiPost(Tts):
    name = "POST /api/tts_streaming"
    path = "/api/tts_streaming"

    def audio(self, response) -> np.ndarray:
        assert response.content[:4] == b"RIFF"
        return _pcm16(response.content[44:])

    def leave(self, text, language) -> None:
        TtsStream.leave(self, text, language)


class JsonWebSocket(Surface):
    name = "WS /ws/tts"
    streamed_text = True

    def url(self, language, voice) -> str:
        query = {k: v for k, v in {"language": language, "voice": voice}.items() if v is not None}
        return f"{self.ws_base}/ws/tts?{urlencode(query)}"

    def speak(self, text, language, voice, pieces=None) -> Verdict:
        pcm, error = b"", None
        with connect(self.url(language, voice), open_timeout=30, max_size=None) as ws:
            try:
                for piece in pieces or [text]:
                    ws.send(json.dumps({"type": "text", "text": piece}))
                ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass
            try:
                while True:
                    message = ws.recv(timeout=180)
                    if isinstance(message, bytes):
                        pcm += message
                    elif json.loads(message)["type"] == "error":
                        error = json.loads(message)["code"]
            except ConnectionClosed:
                pass
        if error is not None:
            return Verdict("refused", error)
        return _speech_or_silent(_pcm16(pcm))

    def leave(self, text, language) -> None:
        with connect(self.url(language, None), open_timeout=30) as ws:
            ws.send(json.dumps({"type": "text", "text": text}))
            ws.send(json.dumps({"type": "end"}))
            while not isinstance(ws.recv(timeout=60), bytes):
                pass


class KyutaiWebSocket(Surface):
    name = "WS /api/tts_streaming"
    streamed_text = True

    def url(self, language, voice) -> str:
        query = {k: v for k, v in {"format": "PcmMessagePack", "language": language, "voice": voice}.items()
                 if v is not None}
        return f"{self.ws_base}/api/tts_streaming?{urlencode(query)}"

    def speak(self, text, language, voice, pieces=None) -> Verdict:
        pcm = []
        with connect(self.url(language, voice), open_timeout=30, max_size=None) as ws:
            try:
                # surrogatepass: a lone surrogate goes out as the invalid bytes a broken client would send.
                for piece in pieces or [text]:
                    ws.send(msgpack.packb({"type": "Text", "text": piece}, unicode_errors="surrogatepass"))
                ws.send(msgpack.packb({"type": "Eos"}))
            except ConnectionClosed:
                pass
            try:
                while True:
                    message = msgpack.unpackb(ws.recv(timeout=180))
                    if message["type"] == "Audio":
                        pcm.append(np.asarray(message["pcm"], dtype=np.float32))
            except ConnectionClosed:
                pass
            code = ws.close_code
        if code != 1000:
            return Verdict("refused", code)
        return _speech_or_silent(np.concatenate(pcm) if pcm else np.zeros(0, dtype=np.float32), code)

    def leave(self, text, language) -> None:
        with connect(self.url(language, None), open_timeout=30) as ws:
            ws.send(msgpack.packb({"type": "Text", "text": text}))
            ws.send(msgpack.packb({"type": "Eos"}))
            while msgpack.unpackb(ws.recv(timeout=60))["type"] != "Audio":
                pass


class Wyoming(Surface):
    name = "Wyoming synthesize"

    def voice(self, language, voice) -> SynthesizeVoice | None:
        return SynthesizeVoice(name=voice, language=language) if (voice or language) else None

    async def _events(self, text, language, voice, stop_after_audio=False) -> list:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.wyoming_port)
        try:
            for event in self.requests(text, language, voice):
                # JSON with \\u escapes, so that a lone surrogate goes out as a broken client would send it.
                header = {"type": event.type, "data": event.data}
                writer.write(json.dumps(header, ensure_ascii=True).encode() + b"\n")
            await writer.drain()
            events = []
            while True:
                event = await asyncio.wait_for(async_read_event(reader), 180)
                assert event is not None, "the server closed the connection"
                events.append(event)
                if stop_after_audio and AudioChunk.is_type(event.type):
                    return events
                if event.type in self.last:
                    return events
        finally:
            writer.close()

    last = ("audio-stop", "error")

    def requests(self, text, language, voice) -> list:
        return [Synthesize(text=text, voice=self.voice(language, voice)).event()]

    def speak(self, text, language, voice, pieces=None) -> Verdict:
        events = asyncio.run(self._events(text, language, voice))
        errors = [WyomingError.from_event(e) for e in events if WyomingError.is_type(e.type)]
        if errors:
            return Verdict("refused", errors[0].code)
        starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
        assert all(start.rate == RATE for start in starts)
        pcm = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
        return _speech_or_silent(_pcm16(pcm))

    def leave(self, text, language) -> None:
        asyncio.run(self._events(text, language, None, stop_after_audio=True))


class WyomingStream(Wyoming):
    name = "Wyoming synthesize-start/chunk/stop"
    streamed_text = True
    pieces = None  # the text as the chunks an LLM's tokens would make
    last = ("synthesize-stopped",)

    def requests(self, text, language, voice) -> list:
        return [SynthesizeStart(voice=self.voice(language, voice)).event(),
                *(SynthesizeChunk(text=piece).event() for piece in self.pieces or [text]), SynthesizeStop().event()]

    def speak(self, text, language, voice, pieces=None) -> Verdict:
        self.pieces = pieces
        try:
            return super().speak(text, language, voice)
        finally:
            self.pieces = None


SURFACES = (Tts, TtsStream, OpenAI, KyutaiPost, JsonWebSocket, KyutaiWebSocket, Wyoming, WyomingStream)
