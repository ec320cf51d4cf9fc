"""Pocket TTS's word times read from the flow model's attention, on the tiny model.

The tiny model has 2 layers of 4 heads, so the heads are named with TTS_POCKET_WORD_HEADS; the
released checkpoints' heads are looked up by their weights (tests/unit/test_word_heads.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from scripts.pocket_parity import load_engine
from tts_service.engines.base import SynthesisRequest
from tts_service.scheduler import Scheduler

from helpers import decode_wav, running_app

HEADS = "1:0 1:3"
TEXT = "Hola, soy Capibara6 con voz natural de Kyutai. ¿Qué tal estás hoy?"
TEXTS = [TEXT, "Buenos días, amigo mío.", "El veloz murciélago comía feliz cardillo y kiwi.",
         "Dijo: «hola», y el niño comió piña a las diez."]

pytestmark = pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")


def spoken_words(text: str) -> list[str]:
    return [word for word in text.split() if any(ch.isalnum() for ch in word)]


@pytest.fixture(scope="module")
def engine(tiny_env):
    """Float weights and no noise: a request's words do not depend on the others in its batch."""
    return load_engine({**tiny_env, "TTS_POCKET_WORD_HEADS": HEADS}, "es", quantize="off")


def words_of(engine, texts: list[str], together: bool) -> list[tuple[list, float]]:
    scheduler = Scheduler(engine, batch_wait=0.2, timeout=60)
    scheduler.start(preload=False)
    try:
        if together:
            jobs = [scheduler.submit(SynthesisRequest(text, "es")) for text in texts]
            results = [job.result() for job in jobs]
            assert scheduler.stats.batch_sizes[len(texts)] > 0, scheduler.stats.batch_sizes
        else:
            results = [scheduler.submit(SynthesisRequest(text, "es")).result() for text in texts]
    finally:
        scheduler.stop(timeout=30)
    return [([(w.word, w.start, w.end) for w in result.words], len(result.audio) / 24000) for result in results]


def check_times(words: list, text: str, duration: float) -> None:
    assert [word for word, _, _ in words] == spoken_words(text)
    previous_end = 0.0
    for word, start, end in words:
        assert previous_end - 1e-6 <= start <= end <= duration + 1e-6, (word, start, end, duration)
        previous_end = end


def test_every_word_once_in_order_inside_the_audio(engine):
    assert engine.capabilities.word_times
    for words, duration in words_of(engine, TEXTS, together=False):
        text = TEXTS[[spoken_words(t) for t in TEXTS].index([w for w, _, _ in words])]
        check_times(words, text, duration)
        assert words[-1][2] > words[0][1], "the words take no time"


def test_a_request_in_a_batch_of_four_has_the_same_times_as_alone(engine):
    alone = words_of(engine, TEXTS, together=False)
    batched = words_of(engine, TEXTS, together=True)
    for (one, _), (many, _) in zip(alone, batched):
        assert [w for w, _, _ in one] == [w for w, _, _ in many]
        assert [t for _, s, e in one for t in (s, e)] == pytest.approx([t for _, s, e in many for t in (s, e)],
                                                                       abs=1e-6)


class _Steered(torch.nn.Module):
    """Layer 1's input projection, with head 0's query and key written so that its attention at
    each frame falls on one chosen token: key j and the query at a frame are 2-d vectors at angles
    in the head's slowest rotary pair (the last two dims, turned by under 0.04 rad over these
    distances), so the token whose angle the query shares takes nearly all the attention."""

    def __init__(self, inner, head_dim: int, query_at: int, key_at: int, angles: list[float], schedule):
        super().__init__()
        self.inner, self.head_dim, self.angles, self.schedule = inner, head_dim, angles, schedule
        self.query_at, self.key_at = query_at, key_at
        self.frame = 0

    def _pair(self, angle: float, like):
        return 40.0 * torch.tensor([math.cos(angle), math.sin(angle)], dtype=like.dtype)

    def forward(self, x):
        out = self.inner(x).clone()
        d, q0, k0 = self.head_dim, self.query_at, self.key_at
        out[..., q0:q0 + d] = 0
        out[..., k0:k0 + d] = 0
        if out.shape[1] > 1:  # the prompt's tokens and the first frame, in one sequence
            for token in range(out.shape[1] - 1):
                out[0, token, k0 + d - 2:k0 + d] = self._pair(self.angles[token], out)
        out[0, -1, q0 + d - 2:q0 + d] = self._pair(self.angles[self.schedule(self.frame)], out)
        self.frame += 1
        return out


def test_a_word_starts_at_the_frame_the_heads_move_to_it(tiny_env):
    """Heads made to attend to word k from frame 5k on: each word's time follows, frame for frame."""
    engine = load_engine({**tiny_env, "TTS_POCKET_WORD_HEADS": "1:0"}, "es", quantize="off")
    text = "uno dos tres cuatro cinco"
    request = SynthesisRequest(text, "es")
    engine.prepare(request)
    (piece,) = request.prepared.sentences
    shares = piece.units.shares
    words = [unit for unit, word in enumerate(piece.units.words) if word is not None]
    first_token = [int((shares[:, unit] > 0).nonzero()[0][0]) for unit in words]
    frames_per_word = 5

    def schedule(frame: int) -> int:
        return first_token[min(frame // frames_per_word, len(words) - 1)]

    tokens = len(piece.tokens)
    layer = engine._model.flow_lm.transformer.layers[1]
    attention = layer.self_attn
    head_dim = attention.dim_per_head
    layer.self_attn.in_proj = _Steered(attention.in_proj, head_dim, 0, attention.attn_dim,
                                       [math.pi * j / tokens for j in range(tokens)], schedule)
    try:
        ((timed, duration),) = words_of(engine, [text], together=False)
    finally:
        layer.self_attn.in_proj = layer.self_attn.in_proj.inner
    check_times(timed, text, duration)
    assert duration > frames_per_word * len(words) * 0.08, "too short to reach the last word"
    for index, (word, start, end) in enumerate(timed):
        assert start == pytest.approx(index * frames_per_word * 0.08, abs=1e-6), timed
        if index + 1 < len(timed):
            assert end == pytest.approx((index + 1) * frames_per_word * 0.08, abs=1e-6), timed


@pytest.fixture(scope="module")
def app(tiny_env):
    with running_app({**tiny_env, "TTS_ROUTES": "en=dsm,fr=dsm", "TTS_POCKET_LANGUAGES": "es",
                      "TTS_POCKET_WORD_HEADS": f"es={HEADS}"}) as app:
        yield app


def test_tts_answers_aligned_words_for_pocket_and_says_so(app):
    body = app.test_client().post("/tts", json={"text": TEXT, "language": "es", "words": True}).get_json()
    assert body["word_times"] == "aligned"
    audio, rate = decode_wav(body["audioContent"])
    # The words spoken: "Capibara6" is read "Capibara seis" (what /normalize shows).
    spoken = app.test_client().post("/normalize", json={"text": TEXT, "language": "es"}).get_json()["text"]
    assert "Capibara seis" in spoken
    check_times([(w["word"], w["start"], w["end"]) for w in body["words"]], spoken, len(audio) / rate)
    dsm = app.test_client().post("/tts", json={"text": "Hello there.", "language": "en", "words": True}).get_json()
    assert dsm["word_times"] == "aligned" and dsm["words"]


def test_without_heads_the_times_are_estimated(make_app, tiny_env):
    client = make_app({**tiny_env, "TTS_ROUTES": "es=pocket", "TTS_POCKET_LANGUAGES": "es"}).test_client()
    body = client.post("/tts", json={"text": TEXT, "language": "es", "words": True}).get_json()
    assert body["word_times"] == "estimated"
    spoken = client.post("/normalize", json={"text": TEXT, "language": "es"}).get_json()["text"]
    assert [w["word"] for w in body["words"]] == spoken.split()


def test_heads_the_model_lacks_fail_its_load_naming_them(tiny_env):
    from tts_service.engines.base import EngineError

    with pytest.raises(EngineError, match="no head 7:0"):
        load_engine({**tiny_env, "TTS_POCKET_WORD_HEADS": "7:0"}, "es", quantize="off")
