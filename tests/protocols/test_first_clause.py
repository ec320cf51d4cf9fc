"""A streamed session on Pocket TTS speaks a long first sentence's first clause before the sentence ends.

The client speaks the JSON WebSocket's protocol (websockets + json), not the service's code. The
clause pause is set longer than any test, so that only the text decides where a clause ends. Pocket
TTS reports no word times: a piece's words are sent once its audio is complete, so audio between two
word events marks where one spoken piece ends and the next begins.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect as ws_connect

from helpers import running_app, served, until_closed

from tts_service.speech.clauses import FIRST_CLAUSE_MIN_WORDS, first_clause_end

RATE = 24000
# A sentence with enough words before its comma, in short words: random weights speak each text for
# its longest length, which grows with its tokens.
SENTENCE = "Ya te lo dije a ti, es así."


@pytest.fixture(scope="module")
def pocket(tiny_env):
    """Spanish on the tiny Pocket TTS model, no DSM; clauses end only where the text says."""
    env = {**tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es"}
    with running_app(env, rate_limit="", cache_bytes=0, session_clause_pause=600.0, ws_idle_timeout=120) as app, \
            served(app) as base:
        yield base.replace("http://", "ws://") + "/ws/tts?language=es"


def connect(url: str):
    return ws_connect(url, max_queue=None, close_timeout=3)


def send_words(ws, words: list[str]) -> None:
    for word in words:
        ws.send(json.dumps({"type": "text", "text": word + " "}))


def receive_until(ws, done, timeout: float = 60) -> list:
    """Messages until `done(messages)` holds; an error if it never does."""
    messages = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        messages.append(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
    return messages


def words_of(messages: list) -> list[dict]:
    events = [json.loads(m) for m in messages if isinstance(m, str)]
    return [e for e in events if e["type"] == "word"]


def pieces(messages: list) -> list[list[str]]:
    """The words of each spoken piece, in order."""
    out: list[list[str]] = []
    run = None
    for message in messages:
        if isinstance(message, bytes):
            run = None
            continue
        event = json.loads(message)
        if event["type"] == "word":
            if run is None:
                run = []
                out.append(run)
            run.append(event["word"])
    return out


def seconds(messages: list) -> float:
    return sum(len(m) for m in messages if isinstance(m, bytes)) / 2 / RATE


def assert_whole_session(messages: list, words: list[str]) -> None:
    events = [json.loads(m) for m in messages if isinstance(m, str)]
    assert not [e for e in events if e["type"] == "error"], events
    assert events[-1]["type"] == "done" and events[-1]["duration"] == pytest.approx(seconds(messages), abs=1e-3)
    timed = words_of(messages)
    assert [e["word"] for e in timed] == words
    assert all(a["end"] == pytest.approx(b["start"], abs=2e-3) for a, b in zip(timed, timed[1:]))
    assert all(e["start"] < e["end"] for e in timed)
    assert timed[-1]["end"] == pytest.approx(seconds(messages), abs=2e-3)


def test_a_first_sentence_speaks_its_first_clause_before_the_sentence_ends(pocket):
    words = SENTENCE.split()
    head = SENTENCE[:first_clause_end(SENTENCE, FIRST_CLAUSE_MIN_WORDS)].split()
    assert 0 < len(head) < len(words) and head[-1].endswith(",")
    with connect(pocket) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        send_words(ws, head)
        # No end mark yet: the clause's audio, then its words, come while the sentence is still open.
        early = receive_until(ws, lambda got: len(words_of(got)) == len(head))
        send_words(ws, words[len(head):])
        ws.send(json.dumps({"type": "end"}))
        messages = early + until_closed(ws)
    assert isinstance(early[0], bytes), "the first clause's audio comes before its words"
    assert [e["word"] for e in words_of(early)] == head
    # The clause's words share exactly its audio: the last one ends where the audio so far does.
    assert words_of(early)[-1]["end"] == pytest.approx(seconds(early), abs=1e-3)
    assert pieces(messages) == [head, words[len(head):]]
    assert_whole_session(messages, words)


def test_a_short_sentence_with_a_comma_is_spoken_whole(pocket):
    words = "Sí, te ayudo.".split()
    assert first_clause_end(" ".join(words) + " ", FIRST_CLAUSE_MIN_WORDS) == 0
    with connect(pocket) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        send_words(ws, words[:-1])
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)  # the sentence is open and its comma comes too early: nothing yet
        send_words(ws, words[-1:])
        ws.send(json.dumps({"type": "end"}))
        messages = until_closed(ws)
    assert pieces(messages) == [words]
    assert_whole_session(messages, words)


def test_later_sentences_are_not_cut_at_commas(pocket):
    first = "Hola amigo.".split()
    words = SENTENCE.split()
    with connect(pocket) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        send_words(ws, first + words[:-1])
        ws.send(json.dumps({"type": "text", "text": words[-1]}))
        ws.send(json.dumps({"type": "end"}))
        messages = until_closed(ws)
    assert pieces(messages) == [first, words]
    assert_whole_session(messages, first + words)


def test_a_clause_spoken_after_the_clause_pause_is_the_first(make_app, tiny_env):
    """Words cut short by the clause pause were the first clause: the next sentence keeps its commas."""
    env = {**tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es"}
    app = make_app(env, rate_limit="", cache_bytes=0, session_clause_pause=0.3)
    words = SENTENCE.split()
    with served(app) as base, connect(base.replace("http://", "ws://") + "/ws/tts?language=es") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        send_words(ws, ["Bueno"])
        early = receive_until(ws, lambda got: len(words_of(got)) == 1)  # spoken after the pause
        ws.send(json.dumps({"type": "text", "text": " ".join(words[:-1]) + " "}))  # past the comma
        ws.send(json.dumps({"type": "text", "text": words[-1]}))
        ws.send(json.dumps({"type": "end"}))
        messages = early + until_closed(ws)
    assert pieces(messages) == [["Bueno"], words]
    assert_whole_session(messages, ["Bueno"] + words)


def test_a_refusal_when_the_clause_pause_flushes_ends_the_session_once(tiny_env, monkeypatch):
    """Words left waiting become a clause after the pause; if that clause is refused, the session says
    so once: one Error and nothing after it, never an Error and then a Done or a second Error."""
    from tts_service.speech.events import Done, Error
    from tts_service.speech.refusals import BAD_REQUEST, Refusal
    from tts_service.speech.request import SpeechRequest
    from tts_service.speech.session import Session

    env = {**tiny_env, "TTS_POCKET_LANGUAGES": "es", "TTS_DEFAULT_LANGUAGE": "es"}
    with running_app(env, rate_limit="", cache_bytes=0, session_clause_pause=0.2) as app:
        service = app.extensions["tts_service"]
        ends = []

        def refuse(self, text, whole=False):
            raise Refusal(BAD_REQUEST, "this clause cannot be spoken")

        monkeypatch.setattr(Session, "_prepared", refuse)
        session = Session(service, SpeechRequest(streamed=True, language="es"),
                          lambda event: ends.append(event) if isinstance(event, (Done, Error)) else None)
        session.start()
        session.add_text("Hola que tal")  # no sentence end, too few words for a first clause: it waits
        session.wait(10)
        time.sleep(0.5)  # anything sent after the first end would arrive meanwhile
        assert [type(event) for event in ends] == [Error]
        assert ends[0].refusal.message == "this clause cannot be spoken"
