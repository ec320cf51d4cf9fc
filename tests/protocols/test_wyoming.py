"""Home Assistant's Wyoming protocol, driven with the wyoming package's own client against the live service."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import warnings

import numpy as np
import pytest

from helpers import free_port, rms, running_app, wait_ready, wait_until
from tts_service import create_app
from tts_service.config import ConfigError, Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # wyoming.audio imports audioop
    from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient, AsyncUnixClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from tts_service.text.checks import complete_sentences

HOLA = "Hola, soy Capibara6 con voz natural de Kyutai."
HELLO = "Hello, I am a natural voice."
MAX_CHARS = 400


@pytest.fixture(scope="module")
def wyoming_app(tiny_env):
    """Spanish on the tiny Pocket TTS model, English and French on tiny DSM, Wyoming on a free port."""
    env = {**tiny_env, "TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "es",
           "TTS_WYOMING_PORT": str(free_port()), "TTS_MAX_CHARS": str(MAX_CHARS),
           "TTS_SESSION_MAX_CHARS": str(MAX_CHARS)}
    with running_app(env, wyoming_host="127.0.0.1") as app:
        yield app


@pytest.fixture
def port(wyoming_app) -> int:
    return wyoming_app.extensions["tts_service"].settings.wyoming_port


def talk(coroutine):
    """Run one client conversation with an overall time limit."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


class Answer:
    """The events of one answer, and its audio decoded."""

    def __init__(self, events: list[Event]):
        self.events = events
        self.types = [e.type for e in events]
        starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
        self.start = starts[0] if starts else None
        chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
        self.formats = {(c.rate, c.width, c.channels) for c in chunks}
        pcm = b"".join(c.audio for c in chunks)
        self.audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        self.seconds = len(self.audio) / 24000
        errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
        self.error = errors[0] if errors else None


async def read_until(client: AsyncTcpClient, *last: str) -> Answer:
    events = []
    while True:
        event = await client.read_event()
        assert event is not None, f"connection closed after {[e.type for e in events]}"
        events.append(event)
        if event.type in last:
            return Answer(events)


async def synthesize(client: AsyncTcpClient, text: str, voice: SynthesizeVoice | None = None) -> Answer:
    await client.write_event(Synthesize(text=text, voice=voice).event())
    return await read_until(client, "audio-stop", "error")


def assert_speech(answer: Answer) -> None:
    assert answer.error is None, answer.error
    assert answer.types[0] == "audio-start" and answer.types[-1] == "audio-stop"
    assert (answer.start.rate, answer.start.width, answer.start.channels) == (24000, 2, 1)
    assert answer.formats == {(24000, 2, 1)}
    assert answer.seconds > 0.3 and rms(answer.audio) > 1e-3, "no audio or silence"


def test_describe_lists_every_voice_of_every_language(wyoming_app, port):
    async def conversation():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            return await read_until(client, "info")

    info = Info.from_event(talk(conversation()).events[-1])
    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.installed and program.version and program.supports_synthesize_streaming
    assert (program.attribution.name, program.attribution.url) == ("Kyutai", "https://kyutai.org")
    router = wyoming_app.extensions["tts_service"].router  # what GET /voices lists
    expected = {(language, f"{language}:{voice}") for language, route in router.routes.items()
                for voice in route.engine.voices(language)[0]}
    assert ("es", "es:tiny-es") in expected and ("fr", "fr:tiny-voice") in expected
    assert {(v.languages[0], v.name) for v in program.voices} == expected
    assert {lang for v in program.voices for lang in v.languages} == {"es", "en", "fr"}
    for voice in program.voices:
        assert voice.installed and voice.attribution.name == "Kyutai" and len(voice.languages) == 1


def test_spanish_and_english_are_spoken_and_grow_with_the_text(port):
    async def conversation():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            english = await synthesize(client, HELLO, SynthesizeVoice(name="en:tiny-voice"))
            short = await synthesize(client, "Hola.", SynthesizeVoice(language="es-ES"))
            long = await synthesize(client, " ".join([HOLA] * 3), SynthesizeVoice(name="tiny-es"))
            default = await synthesize(client, "Hola.")  # no voice: TTS_DEFAULT_LANGUAGE, Spanish
            return english, short, long, default

    english, short, long, default = talk(conversation())
    for answer in (english, short, long, default):
        assert_speech(answer)
    assert long.seconds > 2 * short.seconds
    assert 0.5 < default.seconds / short.seconds < 2


@pytest.mark.parametrize("event, expected", [
    (Synthesize(text=HOLA, voice=SynthesizeVoice(name="es:nobody")), "Unknown voice 'nobody'"),
    (Synthesize(text=HOLA, voice=SynthesizeVoice(name="nobody")), "Unknown voice 'nobody'"),
    (Synthesize(text=HOLA, voice=SynthesizeVoice(language="xx")), "Language 'xx' is not supported"),
    (Synthesize(text="a" * (MAX_CHARS + 1)), f"the limit is {MAX_CHARS}"),
    (Synthesize(text="   "), "empty"),
    (Synthesize(text="**😀** ###"), "nothing speakable"),  # cleaned as over HTTP: markup and emoji are not words
    (SynthesizeChunk(text="Hola."), "between synthesize-start and synthesize-stop"),
    (SynthesizeStop(), "without synthesize-start"),
])
def test_bad_requests_get_an_error_and_the_connection_stays_usable(port, event, expected):
    async def conversation():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(event.event())
            bad = await read_until(client, "error", "audio-stop")
            good = await synthesize(client, "Hola.", SynthesizeVoice(language="es"))
            return bad, good

    bad, good = talk(conversation())
    assert bad.types == ["error"], bad.types
    assert expected in bad.error.text
    assert_speech(good)


def test_a_stream_with_a_bad_voice_says_why_and_still_ends(port):
    async def conversation():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="fr:nobody")).event())
            await client.write_event(SynthesizeChunk(text="Bonjour. ").event())
            await client.write_event(SynthesizeStop().event())
            return await read_until(client, "synthesize-stopped")

    answer = talk(conversation())
    assert answer.types == ["error", "synthesize-stopped"]
    assert "Unknown voice 'nobody'" in answer.error.text and "fr:tiny-voice" in answer.error.text


def stream(port: int, parts: list[str], voice: SynthesizeVoice, gap: float, compat: bool = True,
           wait_for_audio: float = 0.0):
    """Home Assistant's streaming order: start, chunks `gap` apart, the whole text again, stop.

    With `wait_for_audio`, stop is held back until the first audio arrives (at most that many
    seconds), so a busy machine cannot make audio that comes while the text is still open look late."""
    sent_stop: list[float] = []
    heard = asyncio.Event()

    async def write(client):
        await client.write_event(SynthesizeStart(voice=voice).event())
        for part in parts:
            await client.write_event(SynthesizeChunk(text=part).event())
            await asyncio.sleep(gap)
        if compat:
            await client.write_event(Synthesize(text="".join(parts), voice=voice).event())
        if wait_for_audio:
            try:
                await asyncio.wait_for(heard.wait(), wait_for_audio)
            except asyncio.TimeoutError:
                pass
        sent_stop.append(time.monotonic())
        await client.write_event(SynthesizeStop().event())

    async def conversation():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            writer = asyncio.create_task(write(client))
            arrivals, events = [], []
            while True:
                event = await client.read_event()
                assert event is not None
                events.append(event)
                arrivals.append(time.monotonic())
                if AudioChunk.is_type(event.type):
                    heard.set()
                if event.type == "synthesize-stopped":
                    break
            await writer
            return Answer(events), arrivals

    answer, arrivals = talk(conversation())
    first_audio = next((t for t, e in zip(arrivals, answer.events) if AudioChunk.is_type(e.type)), None)
    return answer, first_audio, sent_stop[0]


@pytest.mark.parametrize("language, parts", [
    ("es", ["Hola a todos. ", "Esto es una prueba, ", "con varias frases. ", "¿Qué tal ", "estáis hoy? ",
            "Muy bien, ", "gracias."]),
    ("en", ["Hello everyone. ", "This is ", "a test. ", "Thanks."]),
])
def test_streamed_text_is_spoken_while_it_is_written(port, language, parts):
    answer, first_audio, sent_stop = stream(port, parts, SynthesizeVoice(language=language), gap=0.1,
                                            wait_for_audio=30)
    assert answer.error is None, answer.error
    assert first_audio is not None and first_audio < sent_stop, "no audio before the end of the text"
    non_audio = [t for t in answer.types if t != "audio-chunk"]
    assert non_audio == ["audio-start", "audio-stop", "synthesize-stopped"], "one audio stream for all sentences"
    assert answer.formats == {(24000, 2, 1)} and rms(answer.audio) > 1e-3
    if language == "es":  # (Pocket TTS is the quicker engine on a CPU)
        # The whole text sent again for older servers is not spoken a second time.
        without, _, _ = stream(port, parts, SynthesizeVoice(language=language), gap=0.0, compat=False)
        assert answer.seconds < 1.5 * without.seconds


def test_streamed_text_over_the_limit_is_refused_and_the_stream_ends(port):
    parts = ["Hola. "] + ["palabra " * 20] * 5
    answer, _, _ = stream(port, parts, SynthesizeVoice(language="es"), gap=0.0)
    assert answer.error is not None and f"the limit is {MAX_CHARS}" in answer.error.text
    assert answer.types[-1] == "synthesize-stopped"


def test_four_clients_at_once_share_the_batching_worker(wyoming_app, port):
    dsm = wyoming_app.extensions["tts_service"].router.schedulers["dsm"]
    before = dict(dsm.stats.batch_sizes)

    async def one(voice):
        async with AsyncTcpClient("127.0.0.1", port) as client:
            return await synthesize(client, HELLO, voice)

    async def four():
        return await asyncio.gather(*(one(SynthesizeVoice(language=lang)) for lang in ("en", "fr", "en", "es")))

    for answer in talk(four()):
        assert_speech(answer)
    batched = {size: count - before.get(size, 0) for size, count in dsm.stats.batch_sizes.items()}
    assert max(size for size, count in batched.items() if count > 0) >= 2, batched


def test_a_client_that_leaves_frees_its_slot(wyoming_app, port):
    dsm = wyoming_app.extensions["tts_service"].router.schedulers["dsm"]
    cancelled = dsm.stats.cancelled

    async def leave_after_first_audio():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text=" ".join([HELLO] * 8), voice=SynthesizeVoice(language="en"))
                                     .event())
            while not AudioChunk.is_type((await client.read_event()).type):
                pass

    talk(leave_after_first_audio())
    wait_until(lambda: dsm.stats.cancelled > cancelled and not dsm.active, 10, step=0.05)
    assert dsm.stats.cancelled > cancelled and dsm.active == 0


def test_a_client_that_leaves_mid_stream_frees_its_slots(wyoming_app, port):
    dsm = wyoming_app.extensions["tts_service"].router.schedulers["dsm"]
    cancelled = dsm.stats.cancelled

    async def leave_mid_stream():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(language="en")).event())
            await client.write_event(SynthesizeChunk(text=" ".join([HELLO] * 6) + " And more").event())
            while not AudioChunk.is_type((await client.read_event()).type):
                pass

    talk(leave_mid_stream())
    wait_until(lambda: dsm.stats.cancelled > cancelled and not dsm.active, 10, step=0.05)
    assert dsm.stats.cancelled > cancelled and dsm.active == 0


@pytest.mark.parametrize("buffer, done, rest", [
    ("Hola a todos. ¿Qué", ["Hola a todos."], "¿Qué"),
    ("Hello world. ", ["Hello world."], ""),
    ("Hello world.", [], "Hello world."),
    ("Hello ", [], "Hello "),
    ("Ask Dr. ", [], "Ask Dr. "),
    ("One! Two? Three… ", ["One!", "Two?", "Three…"], ""),
    ("# Title\n\nBody", ["# Title"], "Body"),
    ("```\ncode\n\nmore", [], "```\ncode\n\nmore"),
])
def test_sentences_are_complete_only_when_they_end(buffer, done, rest):
    assert complete_sentences(buffer) == (done, rest)


def test_the_server_stops_with_the_app(tiny_env):
    port = free_port()
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "", "TTS_DEFAULT_LANGUAGE": "en",
           "TTS_WYOMING_PORT": str(port), "TTS_WYOMING_HOST": "127.0.0.1"}
    with running_app(env):
        async def conversation():
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                return await read_until(client, "info")

        assert talk(conversation()).types == ["info"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_unix_socket_serves_home_assistant_on_the_same_machine(tiny_env, tmp_path):
    path = tmp_path / "wyoming.sock"
    env = {**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "", "TTS_DEFAULT_LANGUAGE": "en",
           "TTS_WYOMING_URI": f"unix://{path}"}
    with running_app(env):
        async def conversation():
            async with AsyncUnixClient(str(path)) as client:
                return await synthesize(client, HELLO)

        assert_speech(talk(conversation()))
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        with socket.socket(socket.AF_UNIX) as unix:
            unix.connect(str(path))


def test_a_port_in_use_fails_at_start(tiny_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings.from_env({**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "",
                                      "TTS_WYOMING_PORT": str(taken.getsockname()[1]),
                                      "TTS_WYOMING_HOST": "127.0.0.1"})
        with pytest.raises(ConfigError, match="TTS_WYOMING_PORT"):
            create_app(settings).extensions["tts_service"].start()


def test_zeroconf_without_its_package_fails_at_start_with_what_to_do(tiny_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroconf", None)  # import zeroconf raises ImportError
    settings = Settings.from_env({**tiny_env, "TTS_ROUTES": "en=dsm", "TTS_POCKET_LANGUAGES": "",
                                  "TTS_WYOMING_PORT": str(free_port()), "TTS_WYOMING_ZEROCONF": "true"})
    with pytest.raises(ConfigError, match="pip install zeroconf"):
        create_app(settings).extensions["tts_service"].start()


@pytest.mark.parametrize("value, port", [("", 0), ("0", 0), ("10200", 10200)])
def test_the_port_setting(value, port):
    assert Settings.from_env({"TTS_WYOMING_PORT": value}).wyoming_port == port


def test_a_bad_port_names_the_variable():
    with pytest.raises(ConfigError, match="TTS_WYOMING_PORT"):
        Settings.from_env({"TTS_WYOMING_PORT": "70000"})


def test_no_port_no_server(make_app, tiny_env):
    app = make_app()
    assert "tts_wyoming" not in app.extensions
    wait_ready(app.test_client())
