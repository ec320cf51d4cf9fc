"""Pocket TTS on the tiny model: one frame per step for every request in one batch, the package's own audio, fair starts."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest

from helpers import torch_threads
from scripts.pocket_parity import ALONE_TOLERANCE, BATCH_TOLERANCE, TEXTS, load_engine, package_audio, speak
from tts_service.engines.base import SynthesisRequest
from tts_service.scheduler import JobCancelled, Scheduler

HOLA = "Hola, soy Capibara con voz natural."
LONG = " ".join(["Hola, soy Capibara con voz natural de Kyutai y hablo despacio."] * 3)
FRAME = 1920  # samples per 80 ms frame at 24 kHz


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Every test here compares audio up to float rounding: one torch thread throughout, whatever
    earlier tests set (a row alone on two threads or more is pipelined with one thread per half,
    and a matrix product split across another number of threads rounds differently)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def engine(tiny_env):
    """The Spanish tiny model (int8, as on a CPU) with sampling made deterministic (temperature 0)."""
    return load_engine(tiny_env, "es", quantize="on")


@pytest.fixture(scope="module")
def float_engine(tiny_env):
    """The same model without int8, where batching changes nothing but float rounding."""
    return load_engine(tiny_env, "es", quantize="off")


@pytest.fixture
def scheduler(engine):
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60)
    scheduler.start(preload=False)
    yield scheduler
    scheduler.stop(timeout=30)


def test_the_frame_loop_drives_the_installed_package(engine):
    from tts_service.engines.pocket.internals import frame_loop_problem

    assert frame_loop_problem(engine._model) is None
    assert engine._frame_loop


@pytest.mark.parametrize("which, tolerance", [("float_engine", ALONE_TOLERANCE["off"]),
                                              ("engine", ALONE_TOLERANCE["on"])])
def test_a_request_alone_is_the_packages_own_audio_sample_for_sample(request, which, tolerance):
    """Equal up to rounding. The engine decodes up to four frames per Mimi call, as the package's
    decoder thread does whenever it is behind (a convolution over four frames adds its products
    in another order than over one: about 1e-7); and it runs a piece's text prompt and first
    frame through the flow model as one sequence, which `FlowLMModel.forward` takes, rather than
    one after the other: in float32 that is rounding again, while pocket-tts's int8 layers
    quantize the frame with one scale shared with the prompt (about 2e-5 on this model)."""
    engine = request.getfixturevalue(which)
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60)
    scheduler.start(preload=False)
    try:
        audio = scheduler.submit(SynthesisRequest(HOLA, "es")).result().audio
    finally:
        scheduler.stop(timeout=30)
    reference = package_audio(engine, HOLA)
    assert len(audio) == len(reference) > FRAME
    assert float(np.abs(audio - reference).max()) <= tolerance
    assert float(np.abs(reference).max()) > 100 * tolerance


@pytest.mark.parametrize("which, tolerance", [("float_engine", BATCH_TOLERANCE["off"]),
                                              ("engine", BATCH_TOLERANCE["on"])])
def test_a_request_in_a_batch_of_four_is_the_same_as_alone(request, which, tolerance):
    """Alone and as one row of four, a request says the same thing.

    Not bit for bit: a linear layer over four rows adds its products in another order than over
    one (float32: differences of a few units in the last place), and pocket-tts's int8 layers
    quantize each input with one scale for the whole batch rather than per row (differences of
    about 1e-5 on this model). Attention, which carries a row's own history, is computed per row
    exactly as alone, so the rounding does not grow with the length.
    """
    engine = request.getfixturevalue(which)
    alone = speak(engine, TEXTS, together=False)
    batched = speak(engine, TEXTS)
    for one, many in zip(alone, batched):
        assert len(one) == len(many) > FRAME
        assert float(np.abs(one - many).max()) <= tolerance
        assert float(np.abs(one).max()) > 100 * tolerance
    # Alone, the engine is the package: the first text matches generate_audio sample for sample.
    assert float(np.abs(alone[0] - package_audio(engine, TEXTS[0])[: len(alone[0])]).max()) <= tolerance


def test_requests_join_a_running_batch_and_leave_at_their_own_end(float_engine):
    alone = speak(float_engine, [LONG, TEXTS[1]], seconds=4.0, together=False)
    scheduler = Scheduler(float_engine, batch_wait=0.0, timeout=60)
    scheduler.start(preload=False)
    try:
        first = scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=4.0))
        while first.samples < 10 * FRAME:
            time.sleep(0.005)
        second = scheduler.submit(SynthesisRequest(TEXTS[1], "es", max_audio_seconds=1.0))
        late = second.result().audio
        long_audio = first.result().audio
        assert second.finished_at < first.finished_at, "the short request waited for the long one"
        assert scheduler.stats.batch_sizes[2] > 0 and scheduler.stats.batch_sizes[1] > 0
    finally:
        scheduler.stop(timeout=30)
    assert len(late) == FRAME * 12 + FRAME // 2  # its own limit: 1 s
    assert float(np.abs(late - alone[1][: len(late)]).max()) <= 1e-6
    assert len(long_audio) == len(alone[0]) and float(np.abs(long_audio - alone[0]).max()) <= 1e-6


def test_every_step_is_a_frame_for_every_request_heard_in_small_growing_chunks(engine, scheduler):
    jobs = [scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0)) for _ in range(3)]
    for job in jobs:
        sizes = [len(payload) for kind, payload in job.events() if kind == "audio"]
        # The first frame at once; then chunks of at most four frames, never longer than the audio
        # already sent, so that a listener who started playing never runs out.
        assert sizes[0] == FRAME
        sent = 0
        for size in sizes:
            assert size <= min(4 * FRAME, max(FRAME, sent)), sizes
            sent += size
        assert max(sizes) == 4 * FRAME and sent == 25 * FRAME
    # 25 frames each, generated together: most steps made a frame for all three.
    assert scheduler.stats.batch_sizes[3] >= 20, scheduler.stats.batch_sizes


def test_four_concurrent_requests_all_start_within_a_frame_round(engine):
    snapshots = []  # before every step: what each active job has heard so far
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60, on_step=lambda size: snapshots.append(
        {job.id: job.samples for job in engine.active_jobs()}))
    scheduler.start(preload=False)
    try:
        alone = scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0))
        alone_audio = alone.result().audio
        single = alone.first_audio_at - alone.created
        frame_seconds = (alone.finished_at - alone.first_audio_at) / (len(alone_audio) / FRAME)

        barrier = threading.Barrier(4)
        jobs = []

        def submit():
            barrier.wait()
            jobs.append(scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0)))

        threads = [threading.Thread(target=submit) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lengths = [len(job.result().audio) for job in jobs]
    finally:
        scheduler.stop(timeout=30)
    waits = [job.first_audio_at - job.created for job in jobs]
    # A sentence-per-step worker makes the last of four wait for three whole answers (tens of
    # frames each); one frame per request per step makes it wait about one round of four frames.
    assert max(waits) <= 4 * single + 8 * frame_seconds + 0.25, (waits, single, frame_seconds)
    assert statistics.median(waits) <= 3 * single + 4 * frame_seconds + 0.25, (waits, single)
    # The same counted in audio, which no machine load can blur: by the time the last of the four
    # had heard anything, none of the others had been given more than a few frames.
    ids = {job.id for job in jobs}
    started = next(snap for snap in snapshots if ids <= set(snap) and all(snap[i] > 0 for i in ids))
    assert max(started[i] for i in ids) <= 3 * FRAME, started
    assert all(length > 10 * FRAME for length in lengths)


def test_cancelled_request_stops_within_a_frame_and_others_go_on(engine, scheduler):
    keep = scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0))
    drop = scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0))
    deadline = time.monotonic() + 30
    while drop.first_audio_at is None and time.monotonic() < deadline:
        time.sleep(0.005)
    drop.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(JobCancelled):
        drop.result()
    assert drop.finished_at - cancelled_at < 1.0
    kept = keep.result().audio
    assert drop.samples < len(kept) / 2
    assert len(kept) > 10 * FRAME and float(np.abs(kept).max()) > 1e-3


def test_other_package_internals_are_refused(engine, monkeypatch):
    import importlib.metadata

    from tts_service.engines.pocket import internals as pocket_internals

    assert "lacks" in pocket_internals.frame_loop_problem(object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    assert "9.9.9" in pocket_internals.frame_loop_problem(engine._model)


def test_without_the_frame_loop_requests_take_turns_a_sentence_at_a_time(engine, monkeypatch):
    """The fallback for other pocket-tts versions: the package's own generator, one sentence per step."""
    monkeypatch.setattr(engine, "_frame_loop", False)
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60)
    scheduler.start(preload=False)
    try:
        jobs = [scheduler.submit(SynthesisRequest(text, "es", max_audio_seconds=2.0)) for text in TEXTS[:2]]
        audio = [job.result().audio for job in jobs]
    finally:
        scheduler.stop(timeout=30)
    for one in audio:
        assert len(one) > FRAME and float(np.abs(one).max()) > 1e-3


def test_rows_attend_in_one_call_once_their_prompts_have_run(engine, scheduler, monkeypatch):
    """Per-row attention only where a row adds positions of its own (its text prompt)."""
    from tts_service.engines.pocket import frames

    calls = []
    alone = frames._attend
    monkeypatch.setattr(frames, "_attend", lambda *args: calls.append(1) or alone(*args))
    steps_before = scheduler.stats.steps
    jobs = [scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=2.0)) for _ in range(4)]
    for job in jobs:
        assert len(job.result().audio) == 25 * FRAME
    steps = scheduler.stats.steps - steps_before
    layers = len(engine._model.flow_lm.transformer.layers)
    # Prompt steps run per row (four prompts, a few pieces each); the ~25 steady steps do not.
    assert steps >= 25 and len(calls) < 0.5 * steps * 4 * layers, (len(calls), steps)


def test_cache_slots_are_given_back_when_the_rows_end(engine, scheduler):
    rows = engine._streaming.flow_rows
    jobs = [scheduler.submit(SynthesisRequest(LONG, "es", max_audio_seconds=1.0)) for _ in range(3)]
    for job in jobs:
        job.result()
    deadline = time.monotonic() + 10
    while engine.active_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not rows.buffers and not rows.owners and not engine._streaming.mimi_rows.buffers


def test_the_bfloat16_decoder_says_what_float32_says(tiny_env):
    """Where a CPU multiplies bfloat16 natively the decoder runs in it: the same audio up to its
    rounding (8 bits of mantissa: a few thousandths of the peak), not another sound."""
    from scripts.pocket_parity import load_engine

    exact = speak(load_engine(tiny_env, "es", precision="float32"), [TEXTS[0]], together=False)[0]
    fast_engine = load_engine(tiny_env, "es", precision="bfloat16")
    assert fast_engine.decoder_precision == "bfloat16"
    fast = speak(fast_engine, [TEXTS[0]], together=False)[0]
    assert len(fast) == len(exact) > FRAME
    peak = float(np.abs(exact).max())
    error = float(np.abs(fast - exact).max())
    assert 0 < error <= 0.05 * peak, (error, peak)
    signal_to_error = 10 * np.log10(np.mean(exact ** 2) / np.mean((fast - exact) ** 2))
    assert signal_to_error > 25, signal_to_error


def test_rows_past_the_decoders_context_keep_only_a_ring_of_it(float_engine):
    """Mimi's decoder transformer sees its last `context` steps: each row keeps that many (and a
    spare) in a ring, however long it speaks; its audio past the first wrap is the package's own."""
    engine = float_engine
    rows = engine._streaming.mimi_rows
    (name, ring), = list(rows.rings.items())[:1]
    steps_per_second = engine._model.mimi.encoder_frame_rate
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60)
    scheduler.start(preload=False)
    seen = []
    try:
        jobs = [scheduler.submit(SynthesisRequest(text, "es")) for text in (HOLA, TEXTS[1])]
        while not all(job.done for job in jobs):
            if rows.buffers:
                seen.append(rows.buffers[name].shape[2])
            time.sleep(0.01)
        audio = jobs[0].result().audio
    finally:
        scheduler.stop(timeout=30)
    assert seen and set(seen) == {ring}
    assert len(audio) / engine.sample_rate > 2 * ring / steps_per_second  # the ring went round twice
    reference = package_audio(engine, HOLA)
    assert float(np.abs(audio - reference).max()) <= BATCH_TOLERANCE["off"]


def test_a_row_alone_is_decoded_beside_the_flow_model_and_says_the_same(float_engine, monkeypatch):
    """Alone on a CPU with two torch threads or more, a row's frames are decoded in a second thread
    while the flow model makes the next one: the same audio and words as in a batch (decoded in
    the worker), every piece of a long text whole and in order."""
    from tts_service.engines.pocket.pipeline import DecodePipeline

    engine = float_engine
    monkeypatch.setattr(DecodePipeline, "torch_threads", lambda self: 2)
    decoded_in = set()
    real_decode = DecodePipeline.decode_taken

    def decode_taken(self, taken):
        decoded_in.add(threading.current_thread().name)
        return real_decode(self, taken)

    monkeypatch.setattr(DecodePipeline, "decode_taken", decode_taken)
    scheduler = Scheduler(engine, batch_wait=0.05, timeout=60)
    scheduler.start(preload=False)
    try:
        alone = scheduler.submit(SynthesisRequest(LONG, "es")).result()
        assert any(name.startswith("tts-decoder") for name in decoded_in)
        decoded_in.clear()
        pair = [scheduler.submit(SynthesisRequest(text, "es")) for text in (LONG, HOLA)]
        batched = pair[0].result()
        pair[1].result()
    finally:
        scheduler.stop(timeout=30)
    assert any(name.startswith("tts-worker") for name in decoded_in)  # two rows: decoded in the worker
    assert len(alone.audio) == len(batched.audio) > 3 * FRAME
    assert float(np.abs(alone.audio - batched.audio).max()) <= BATCH_TOLERANCE["off"]
    assert [word.word for word in alone.words] == [word.word for word in batched.words]
    assert [word.start for word in alone.words] == pytest.approx([word.start for word in batched.words], abs=0.09)
    assert float(np.abs(alone.audio[:len(package_audio(engine, HOLA))]).max()) > 0  # not silence
