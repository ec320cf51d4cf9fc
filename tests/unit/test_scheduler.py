"""The scheduler's batching, deadlines and cancellation, driven with a fake engine: no model, milliseconds."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tts_service.engines.base import Engine, SlotOutput, SynthesisRequest
from tts_service.scheduler import JobCancelled, QueueFullError, Scheduler
from helpers import wait_until


class FakeEngine(Engine):
    """Each job speaks `frames` steps of one sample per step; every step records the batch it ran."""

    provider = "fake"
    kind = "fake"

    def __init__(self, slots: int = 4, frames: int = 3, step_seconds: float = 0.0, row_seconds: float = 0.0):
        super().__init__()
        self.slots, self.frames, self.step_seconds, self.row_seconds = slots, frames, step_seconds, row_seconds
        self.active: dict = {}
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    model_id = "fake"
    device = "cpu"
    sample_rate = 10
    languages = ("xx",)

    @property
    def max_slots(self) -> int:
        return self.slots

    def _load(self) -> None:
        pass

    def voices(self, language):
        return ["v"], "v"

    def prepare(self, request: SynthesisRequest) -> None:
        request.prepared = True

    def admit(self, job) -> None:
        self.active[job] = 0

    def step(self) -> list[SlotOutput]:
        self.gate.wait(5)
        time.sleep(self.step_seconds + self.row_seconds * len(self.active))
        self.batches.append(sorted(job.id for job in self.active))
        outputs = []
        for job in list(self.active):
            self.active[job] += 1
            out = SlotOutput(job, np.ones(1, dtype=np.float32), words=[(f"w{self.active[job]}", self.active[job] / 10)])
            if self.active[job] >= self.frames:
                del self.active[job]
                out.done = True
            outputs.append(out)
        return outputs

    def release(self, job) -> None:
        self.active.pop(job, None)

    def active_jobs(self):
        return list(self.active)


def scheduler(engine: FakeEngine, **options) -> Scheduler:
    defaults = {"max_queue": 8, "batch_wait": 0.05, "timeout": 5.0}
    sched = Scheduler(engine, **{**defaults, **options})
    sched.start(preload=True)
    return sched


def request() -> SynthesisRequest:
    return SynthesisRequest(text="x", language="xx")


def test_requests_arriving_together_are_generated_in_one_batch():
    engine = FakeEngine(slots=4)
    sched = scheduler(engine)
    try:
        jobs = [sched.submit(request()) for _ in range(4)]
        results = [job.result() for job in jobs]
        assert [len(r.audio) for r in results] == [3, 3, 3, 3]
        assert max(len(batch) for batch in engine.batches) == 4
    finally:
        sched.stop(5)


@pytest.mark.parametrize("slots, jobs", [(1, 3), (2, 5), (4, 4)])
def test_a_batch_never_holds_more_than_the_slots(slots, jobs):
    engine = FakeEngine(slots=slots)
    sched = scheduler(engine)
    try:
        submitted = [sched.submit(request()) for _ in range(jobs)]
        for job in submitted:
            assert len(job.result().audio) == 3
        assert max(len(batch) for batch in engine.batches) <= slots
        assert sched.stats.completed == jobs
    finally:
        sched.stop(5)


def test_a_cancelled_job_leaves_its_slot_at_the_next_step():
    engine = FakeEngine(slots=2, frames=1000, step_seconds=0.001)
    sched = scheduler(engine)
    try:
        job = sched.submit(request())
        wait_until(lambda: bool(engine.active), 5, step=0.001, message="the job never reached the engine")
        job.cancel()
        with pytest.raises(JobCancelled):
            job.result()
        assert not engine.active and sched.stats.cancelled == 1
    finally:
        sched.stop(5)


def test_a_full_queue_refuses_at_once():
    engine = FakeEngine(slots=1)
    engine.gate.clear()  # the worker is stuck in a step: nothing leaves the queue
    sched = scheduler(engine, max_queue=2)
    try:
        first = sched.submit(request())
        wait_until(lambda: bool(engine.active), 5, step=0.001, message="the job never reached the engine")
        sched.submit(request())
        sched.submit(request())
        with pytest.raises(QueueFullError):
            sched.submit(request())
        first.cancel()
    finally:
        engine.gate.set()
        sched.stop(5)


def test_a_job_that_waited_past_its_deadline_is_told_so():
    engine = FakeEngine(slots=1, frames=20, step_seconds=0.01)
    sched = scheduler(engine, timeout=0.05)
    try:
        sched.submit(request())
        late = sched.submit(request())
        with pytest.raises(TimeoutError):
            late.result()
        assert sched.stats.expired >= 1
    finally:
        sched.stop(5)


def test_the_scheduler_truncates_at_the_jobs_limit_and_ends_its_words():
    engine = FakeEngine(slots=2, frames=50)
    sched = scheduler(engine)
    try:
        job = sched.submit(SynthesisRequest(text="x", language="xx", max_audio_seconds=0.5))  # 5 samples at 10 Hz
        result = job.result()
        assert len(result.audio) == 5 and result.truncated and not engine.active
        assert [w.word for w in result.words] == ["w1", "w2", "w3", "w4"]  # w5 starts at the limit
        assert all(w.end == n.start for w, n in zip(result.words, result.words[1:]))
        assert result.words[-1].end == 0.5
        whole = sched.submit(request()).result()
        assert len(whole.audio) == 50 and not whole.truncated
    finally:
        sched.stop(5)


def test_requests_submitted_from_many_threads_are_all_counted():
    """`submit` runs in each request's own thread: its count must not lose an increment to another."""
    import sys

    engine = FakeEngine(slots=64, frames=1)
    engine.gate.clear()  # nothing finishes while the threads submit
    scheduler = Scheduler(engine, max_queue=10_000, batch_wait=0.0, timeout=60)
    scheduler.start(preload=False)
    threads, per_thread = 8, 300
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can, to expose a lost update
    try:
        workers = [threading.Thread(target=lambda: [scheduler.submit(SynthesisRequest("x", "xx"))
                                                    for _ in range(per_thread)]) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch)
        engine.gate.set()
        scheduler.stop(timeout=30)
    assert scheduler.stats.submitted == threads * per_thread


def test_a_live_job_is_admitted_before_a_background_job_queued_earlier():
    """A long document's pieces use only the capacity live requests leave."""
    engine = FakeEngine(slots=1, frames=3)
    engine.gate.clear()  # the only row is busy until the gate opens
    sched = scheduler(engine)
    try:
        first = sched.submit(request())
        assert wait_until(lambda: bool(engine.active), 5)
        background = sched.submit(SynthesisRequest(text="x", language="xx", background=True, listening=False))
        live = sched.submit(SynthesisRequest(text="x", language="xx", listening=False))
        time.sleep(0.1)
        engine.gate.set()
        for job in (first, background, live):
            job.result()
        assert live.admitted_at < background.admitted_at
    finally:
        engine.gate.set()
        sched.stop(5)


def test_a_background_job_leaves_the_last_free_row_to_live_requests():
    engine = FakeEngine(slots=2, frames=30, step_seconds=0.005)
    sched = scheduler(engine)
    try:
        live = sched.submit(request())
        assert wait_until(lambda: bool(engine.active), 5)
        background = sched.submit(SynthesisRequest(text="x", language="xx", background=True, listening=False))
        time.sleep(0.05)
        assert background.admitted_at is None and engine.free_slots() == 1  # the free row stays free
        live.result()
        background.result()
        assert background.admitted_at >= live.admitted_at
        assert all(len(batch) == 1 for batch in engine.batches)  # never side by side with the live job
    finally:
        sched.stop(5)


def test_a_background_row_gives_way_to_a_live_request():
    """A live request never waits on a long document's piece: the piece leaves its row and is made again later."""
    from tts_service.scheduler import JobPreempted

    engine = FakeEngine(slots=1, frames=10_000, step_seconds=0.002)
    sched = scheduler(engine)
    try:
        background = sched.submit(SynthesisRequest(text="x", language="xx", background=True, listening=False))
        assert wait_until(lambda: bool(engine.active), 5)
        live = sched.submit(SynthesisRequest(text="x", language="xx", max_audio_seconds=0.3))
        with pytest.raises(JobPreempted):
            background.result()
        assert len(live.result().audio) > 0 and sched.stats.preempted == 1
    finally:
        sched.stop(5)
