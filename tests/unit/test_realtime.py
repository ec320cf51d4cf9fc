"""Admission that keeps real time: the step-cost model, and the scheduler holding a row back
(with a fake engine whose step costs a known time per row, in milliseconds)."""

from __future__ import annotations

import time

import pytest

from helpers import wait_until
from test_scheduler import FakeEngine
from tts_service.engines.base import SynthesisRequest
from tts_service.scheduler.realtime import StepCost, headroom, room_for_one_more
from tts_service.scheduler import Scheduler

FRAME = 0.02  # this fake engine's frame: 20 ms of audio per step and row


def test_an_unseen_row_count_is_guessed_from_those_seen():
    cost = StepCost()
    assert cost.predict(3) is None
    cost.record(2, 0.010)
    assert cost.predict(2) == pytest.approx(0.010)
    assert cost.predict(4) == pytest.approx(0.020)  # one count seen: as if each row cost the same
    assert cost.predict(1) == pytest.approx(0.010)  # fewer rows cost no more than the nearest larger
    cost.record(2, 0.020)
    assert cost.predict(2) == pytest.approx(0.012)  # a moving average, not the last step


def test_beyond_two_counts_seen_the_guess_follows_their_line():
    flat = StepCost()  # a step that costs nearly the same whatever its rows (a DSM batch on a GPU)
    flat.record(1, 0.0200)
    flat.record(4, 0.0212)
    assert flat.predict(64) == pytest.approx(0.0212 + 60 * 0.0212 / 4 / 4)  # never under a quarter of a row's share
    growing = StepCost()  # a step that grows with its rows (Pocket TTS on a CPU)
    growing.record(2, 0.020)
    growing.record(4, 0.036)
    assert growing.predict(6) == pytest.approx(0.052)


def test_room_for_one_more():
    cost = StepCost()
    assert room_for_one_more(cost, 0, FRAME, 1.25) and room_for_one_more(cost, 3, FRAME, 1.25)  # nothing seen
    cost.record(3, 0.012)  # 4 ms a row: 4 rows would take 16 ms of a 20 ms frame, 5 rows 20 ms
    assert room_for_one_more(cost, 3, FRAME, 1.25)
    cost.record(4, 0.016)
    assert not room_for_one_more(cost, 4, FRAME, 1.25)
    assert room_for_one_more(cost, 4, FRAME, 0)  # 0: no limit
    assert room_for_one_more(cost, 0, FRAME, 1.25)  # a lone row always runs
    assert headroom(cost, 4, FRAME) == pytest.approx(1.25)


def run(engine: FakeEngine, margin: float, count: int, frame: float = FRAME) -> Scheduler:
    engine.frame_seconds = frame
    scheduler = Scheduler(engine, max_queue=64, batch_wait=0.0, timeout=60, realtime_margin=margin)
    scheduler.start(preload=True)
    # One request alone first: until a step was measured, nothing is known, and a burst is let in whole.
    scheduler.submit(SynthesisRequest(text="x", language="xx")).result()
    engine.batches.clear()
    jobs = [scheduler.submit(SynthesisRequest(text="x", language="xx")) for _ in range(count)]
    for job in jobs:
        assert len(job.result().audio) == engine.frames  # everyone gets all their audio
    scheduler.stop(timeout=10)
    return scheduler


def most_rows(engine: FakeEngine) -> int:
    return max(len(batch) for batch in engine.batches)


def test_rows_that_would_fall_behind_real_time_wait_their_turn():
    # 4 ms a row and a 20 ms frame: with a margin of 1.25 at most 4 rows stay real time (16 ms).
    engine = FakeEngine(slots=12, frames=8, row_seconds=0.004)
    scheduler = run(engine, margin=1.25, count=10)
    assert 2 <= most_rows(engine) <= 4  # guessed from one row's cost, then learnt
    assert scheduler.stats.held_for_realtime > 0
    assert scheduler.stats.completed == 11


def test_without_a_margin_every_slot_fills():
    engine = FakeEngine(slots=12, frames=8, row_seconds=0.004)
    run(engine, margin=0, count=10)
    assert most_rows(engine) == 10


def test_cheap_rows_all_run_together():
    # Steps that cost nothing but the machine's own noise, a second of audio each: real time for
    # ten rows unless a row's step took a tenth of a second.
    engine = FakeEngine(slots=12, frames=8)
    scheduler = run(engine, margin=1.25, count=10, frame=1.0)
    assert most_rows(engine) == 10 and scheduler.stats.held_for_realtime == 0


def test_a_stream_goes_before_a_whole_text_that_came_first():
    """A whole text is answered at its end: it takes the rows that streams leave."""
    engine = FakeEngine(slots=1, frames=4)
    engine.frame_seconds = FRAME
    scheduler = Scheduler(engine, max_queue=8, batch_wait=0.0, timeout=60, realtime_margin=1.25)
    scheduler.start(preload=True)
    try:
        engine.gate.clear()  # the one slot is taken while the other two queue
        first = scheduler.submit(SynthesisRequest(text="x", language="xx"))
        wait_until(lambda: bool(engine.active), 5, step=0.001, message="the first job never reached the engine")
        whole = scheduler.submit(SynthesisRequest(text="x", language="xx", listening=False))
        stream = scheduler.submit(SynthesisRequest(text="x", language="xx"))
        engine.gate.set()
        for job in (first, whole, stream):
            assert len(job.result().audio) == engine.frames
        assert stream.admitted_at < whole.admitted_at
    finally:
        engine.gate.set()
        scheduler.stop(timeout=10)


def test_a_request_whose_wait_would_pass_the_timeout_is_told_busy_at_once():
    from tts_service.scheduler import QueueFullError
    from tts_service.speech.failures import as_refusal
    from tts_service.speech.refusals import BUSY

    # 4 ms a row, a 20 ms frame: four rows run together, 16 ms a step; a job of 40 frames holds its
    # row for about 0.64 s, so a request a dozen places behind the first four would end past 2 s.
    engine = FakeEngine(slots=12, frames=40, row_seconds=0.004)
    engine.frame_seconds = FRAME
    scheduler = Scheduler(engine, max_queue=64, batch_wait=0.0, timeout=2.0, realtime_margin=1.25)
    scheduler.start(preload=True)
    try:
        scheduler.submit(SynthesisRequest(text="x", language="xx")).result()  # a job's length is learnt
        waiting, refused = [], None
        for _ in range(60):
            time.sleep(0.005)  # clients come one after another
            try:
                waiting.append(scheduler.submit(SynthesisRequest(text="x", language="xx")))
            except QueueFullError as exc:
                refused = exc
                break
        assert refused is not None, "every request queued, however long its wait"
        assert 4 < len(waiting) < 60  # those that could start within the timeout were taken
        refusal = as_refusal(refused)
        assert refusal.kind == BUSY and refusal.retry_after >= 1
        for job in waiting:
            assert len(job.result().audio) == engine.frames  # none of them timed out
    finally:
        scheduler.stop(timeout=10)


def test_a_count_not_run_for_a_while_is_guessed_again_from_those_that_were():
    """A slow step measured once (a burst, a busy moment) must not keep the batch small for good."""
    cost = StepCost(memory=10)
    cost.record(2, 0.100)  # once, in a burst: two rows looked too slow to run together
    for _ in range(11):
        cost.record(1, 0.020)  # since then one row at a time, 20 ms a step
    assert cost.predict(2) == pytest.approx(0.040)  # guessed anew from the fresh count
    cost.record(2, 0.030)
    assert cost.predict(2) == pytest.approx(0.030)
    stale = StepCost(memory=10)
    stale.record(3, 0.050)
    assert stale.predict(3) == pytest.approx(0.050)  # with nothing fresher, the old figure stands


class DecodingEngine(FakeEngine):
    """Cheap steps, and every fourth an expensive one (as Pocket TTS decodes four frames at a time)."""

    steps_per_cycle = 4

    def step(self):
        self.row_seconds = 0.007 if len(self.batches) % 4 == 3 else 0.001  # 2.5 ms a row on average
        return super().step()


def test_a_cost_that_repeats_every_few_steps_is_measured_over_whole_cycles():
    """With a 20 ms frame and a margin of 1.25, six rows fit (15 ms a step on average); the cheap
    steps alone (1 ms a row) would let in all twelve, which would then fall behind."""
    engine = DecodingEngine(slots=12, frames=60)
    run(engine, margin=1.25, count=12)
    assert 3 <= most_rows(engine) <= 6
