"""One worker thread per engine: a bounded queue in front, batching, deadlines and cancellation.

HTTP threads never touch a model. They `submit` a request and read the job's events (audio
chunks, words, then done or error) from a queue, the way pocket-tts streams from its decoder
thread. The worker admits queued jobs into the engine's free slots (waiting `batch_wait` when
idle so that requests arriving together start together), drops jobs whose client left or whose
deadline passed, and steps the engine until every job is done.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


from ..engines.base import Engine, EngineError, SlotOutput, SynthesisRequest
from ..heap import return_free_heap
from ..threads import release_helpers
from .job import Job, JobCancelled, JobPreempted
from .realtime import CycleCost, StepCost, headroom, room_for_one_more, rows_in_real_time

logger = logging.getLogger(__name__)

_STOP = object()


class QueueFullError(RuntimeError):
    """Too many requests are waiting, or the wait would outlast the timeout; retry later."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = max(int(retry_after), 1)


class EngineUnavailableError(RuntimeError):
    """The engine is loading, failed to load, or the service is stopping."""

    def __init__(self, message: str, loading: bool = False):
        super().__init__(message)
        self.loading = loading


@dataclass
class SchedulerStats:
    """What the worker did; counted under `lock`, since requests are counted in their own threads."""
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    steps: int = 0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)
    held_for_realtime: int = 0  # admissions put off because one more row would fall behind real time
    preempted: int = 0  # background rows that left for a live request
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Scheduler:
    """Owns one engine and the only thread that runs it."""

    def __init__(self, engine: Engine, *, max_queue: int = 32, batch_wait: float = 0.02,
                 timeout: float = 120.0, name: str | None = None,
                 on_step: Callable[[int], None] | None = None,
                 on_done: Callable[[Job], None] | None = None, idle_unload: float = 0.0,
                 realtime_margin: float = 0.0):
        self.engine = engine
        self.name = name or engine.provider
        self.batch_wait = batch_wait
        self.timeout = timeout
        self.stats = SchedulerStats()
        self.realtime_margin = realtime_margin
        self.step_cost = StepCost()
        self.job_steps: float | None = None  # how many steps an admitted job holds its row (moving average)
        self._cycles = CycleCost(self.step_cost, getattr(engine, "steps_per_cycle", 1))
        self._on_step = on_step
        self._on_done = on_done
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._pending: collections.deque[Job] = collections.deque()
        # Jobs submitted and not yet in a row (queued, pending, or being admitted), counted in one
        # place under a lock: a job moving from the queue to the pending list or into the engine is
        # in neither for a moment, and a request sent then would be promised a wait too short.
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._accepting = True
        self._preload = False
        # An engine with `unload` and no work for `idle_unload` seconds gives its memory back;
        # `_use_lock` keeps it from unloading while a requester prepares (and maybe loads).
        self.idle_unload = idle_unload
        self._last_used = time.monotonic()
        self._use_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, preload: bool = True) -> None:
        """Start the worker; with `preload` it loads the model first, in its own thread."""
        self._preload = preload
        if preload:
            self.engine.state = "loading"
        self._thread = threading.Thread(target=self._run, name=f"tts-worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what was accepted, then end the worker."""
        self._accepting = False
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._pending)

    @property
    def active(self) -> int:
        return len(self.engine.active_jobs()) if self.engine.is_loaded else 0

    @property
    def realtime_headroom(self) -> float | None:
        """How many times faster than real time the rows now held run (idle: one row); None unmeasured."""
        return headroom(self.step_cost, max(self.active, 1), self.engine.frame_seconds)

    # -- requests --------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise EngineUnavailableError while the model is loading, after a failed load, or at shutdown.

        A model that loads on its first request is available: that request waits for it."""
        if not self._accepting:
            raise EngineUnavailableError("the service is shutting down")
        state = self.engine.state
        if state == "error":
            raise EngineUnavailableError(f"model failed to load: {self.engine.error}")
        if state == "loading" and self._preload:
            raise EngineUnavailableError("model is still loading", loading=True)

    def prepare(self, request: SynthesisRequest) -> None:
        """Do the request's own work in the caller's thread (voice, text rules, tokens).

        Raises the engine's RequestError for what the client sent, or EngineUnavailableError."""
        self.check_available()
        try:
            with self._use_lock:
                self._last_used = time.monotonic()
                if not self.engine.is_loaded:
                    try:
                        self.engine.load()  # loaded on first use: this request waits, in its own thread
                    except EngineError as exc:
                        raise EngineUnavailableError(f"model failed to load: {exc}") from None
                self.engine.prepare(request)
        finally:
            release_helpers()  # this thread goes back to HTTP: its torch helpers would slow the workers

    def submit(self, request: SynthesisRequest) -> Job:
        """Queue a prepared request; raise QueueFullError or EngineUnavailableError instead of waiting."""
        if request.prepared is None:
            self.prepare(request)
        elif not self._accepting:
            raise EngineUnavailableError("the service is shutting down")
        job = Job(request, self.engine.sample_rate, self.timeout)
        with self._waiting_lock:  # one request at a time is promised a wait, counting those before it
            finish = self.predicted_finish()
            # The promise keeps the rows' margin: steps that slow down by less than it still end in time.
            if finish is not None and finish * max(self.realtime_margin, 1.0) > self.timeout:
                raise QueueFullError(f"a request now would end in about {finish:.0f} s, too near the request "
                                     "timeout", retry_after=max(math.ceil(finish - self.timeout), 1))
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFullError(f"{self.queue_depth} requests are already waiting") from None
            self._waiting += 1
        self.stats.count("submitted")
        return job

    def predicted_finish(self) -> float | None:
        """Seconds until a request sent now would end, waiting for a row that keeps every row real time.

        As many rows as stay real time run at once, each for `job_steps` steps on average, and
        those already waiting go first: rounds of `rows` jobs, counted whole, then its own.
        None without a margin or before any job ended."""
        if self.realtime_margin <= 0 or self.job_steps is None:
            return None
        rows = rows_in_real_time(self.step_cost, self.engine.frame_seconds, self.realtime_margin,
                                 self.engine.max_slots)
        step = self.step_cost.predict(rows) or self.engine.frame_seconds / self.realtime_margin
        ahead = self._waiting
        beyond = max(ahead + 1 - max(rows - self.active, 0), 0)
        return (math.ceil(beyond / rows) + 1) * self.job_steps * step

    # -- the worker ------------------------------------------------------------------------
    def _run(self) -> None:
        if self._preload:
            try:
                self.engine.load()
            except EngineError:
                pass  # the reason is kept on the engine for /health and for 503 answers
        stopping = False
        while True:
            idle = not self._has_work()
            if idle:
                release_helpers()  # while it waits, its torch helpers would slow the other workers
                return_free_heap()
            stopping = self._collect(block=idle, stopping=stopping)
            self._admit()
            self._drop_abandoned()
            if self.engine.is_loaded and self.engine.active_jobs():
                self._step()
            elif stopping and not self._pending and self._queue.empty():
                break

    def _has_work(self) -> bool:
        return bool(self._pending) or (self.engine.is_loaded and bool(self.engine.active_jobs()))

    def _collect(self, block: bool, stopping: bool) -> bool:
        """Move queued jobs to the pending list; when idle, wait for one and then a batch window."""
        if block and not stopping:
            try:
                item = self._queue.get(timeout=self.idle_unload or None)
            except queue.Empty:
                self._unload_if_idle()
                return stopping
            if item is _STOP:
                return True
            self._pending.append(item)
            window_end = time.monotonic() + self.batch_wait
            while len(self._pending) < max(self._free_slots(), 1):
                remaining = window_end - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is _STOP:
                    return True
                self._pending.append(item)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stopping
            if item is _STOP:
                stopping = True
            else:
                self._pending.append(item)

    def _unload_if_idle(self) -> None:
        unload = getattr(self.engine, "unload", None)
        if unload is None or not self.engine.is_loaded:
            return
        with self._use_lock:
            idle = time.monotonic() - self._last_used
            if idle >= self.idle_unload and not self._pending and self._queue.empty() \
                    and not self.engine.active_jobs():
                logger.info("%s unused for %.0f s: unloading it", self.name, idle)
                unload()

    def _free_slots(self) -> int:
        return self.engine.free_slots() if self.engine.is_loaded else self.engine.max_slots

    def _admit(self) -> None:
        if self._pending and not self.engine.is_loaded:
            try:
                self.engine.load()
            except EngineError as exc:
                while self._pending:
                    self._pending.popleft().fail(EngineUnavailableError(f"model failed to load: {exc}"))
                    self._left_waiting()
                return
        now = time.monotonic()
        for job in list(self._pending):
            if job.cancelled:
                self._pending.remove(job)
                self.stats.count("cancelled")
                job.fail(JobCancelled("client disconnected"))
                self._left_waiting()
            elif job.expired(now):
                self._pending.remove(job)
                self.stats.count("expired")
                job.fail(TimeoutError("request waited longer than the request timeout"))
                self._left_waiting()
        self._preempt_for_live()
        while self._pending and self.engine.free_slots() > 0:
            # Someone is listening to a stream as it comes: it goes before a whole text, which is
            # answered only at its end, and takes the rows streams leave; each kind in arrival order.
            # Background work (a long document's pieces) goes after every live job pending, and leaves the last
            # free row to live requests while live jobs run: it only uses the capacity they leave.
            live = [job for job in self._pending if not job.request.background]
            job = next((job for job in live if job.request.listening), live[0] if live else self._pending[0])
            if not live and self.engine.free_slots() <= 1 and any(not running.request.background
                                                                  for running in self.engine.active_jobs()):
                break
            rows = len(self.engine.active_jobs())
            if not room_for_one_more(self.step_cost, rows, self.engine.frame_seconds, self.realtime_margin,
                                     measured=self._cycles.settled(rows)):
                if not job.held:
                    job.held = True
                    self.stats.count("held_for_realtime")
                break
            self._pending.remove(job)
            job.admitted_at, job.admitted_step = time.monotonic(), self.stats.steps
            try:
                if job.request.prepared is None:
                    self.engine.prepare(job.request)
                self.engine.admit(job)
            except Exception as exc:
                logger.warning("could not start job %s: %s", job.id, exc)
                self.stats.count("failed")
                job.fail(exc)
            finally:
                self._left_waiting()

    def _preempt_for_live(self) -> None:
        """A live request waits while a background row runs: the background row leaves, so that live
        speech never waits on a document's piece (which is made again later, whole)."""
        if not any(not job.request.background for job in self._pending):
            return
        active = self.engine.active_jobs()
        background = [job for job in active if job.request.background]
        if not background:
            return
        rows = len(active)
        if self.engine.free_slots() > 0 and room_for_one_more(self.step_cost, rows, self.engine.frame_seconds,
                                                              self.realtime_margin,
                                                              measured=self._cycles.settled(rows)):
            return
        victim = background[-1]
        self.engine.release(victim)
        self.stats.count("preempted")
        victim.fail(JobPreempted("a live request took this row; the piece is made again later"))

    def _left_waiting(self) -> None:
        with self._waiting_lock:
            self._waiting -= 1

    def _drop_abandoned(self) -> None:
        if not self.engine.is_loaded:
            return
        now = time.monotonic()
        for job in list(self.engine.active_jobs()):
            if job.cancelled:
                self.stats.count("cancelled")
                self.engine.release(job)
                job.fail(JobCancelled("client disconnected"))
            elif job.expired(now):
                self.stats.count("expired")
                self.engine.release(job)
                job.fail(TimeoutError("synthesis took longer than the request timeout"))

    def _step(self) -> None:
        active = list(self.engine.active_jobs())
        self._last_used = time.monotonic()
        self.stats.count("steps")
        self.stats.batch_sizes[len(active)] += 1
        if self._on_step is not None:
            self._on_step(len(active))
        started = time.perf_counter()
        try:
            outputs = self.engine.step()
        except Exception as exc:
            # No client input reaches a step unchecked, so this is ours (out of memory, a bug):
            # the jobs in this step fail with a 500 and the engine starts clean for the next ones.
            logger.exception("%s failed during generation; failing %d job(s)", self.name, len(active))
            self.stats.count("failed", len(active))
            for job in active:
                job.fail(EngineError(f"generation failed: {type(exc).__name__}"))
            self.engine.reset()
            return
        if outputs is None:
            release_helpers()
            time.sleep(0.002)  # every job waits for text: don't spin
            return
        self._cycles.measured(len(active), time.perf_counter() - started)
        for output in outputs:
            self._deliver(output)

    def _deliver(self, output: SlotOutput) -> None:
        """A slot's output to its job: words (each one's end is its own, or the next one's start), audio up to
        the job's `max_audio_seconds` (a job that reaches it is truncated and leaves its slot), the end."""
        job = output.job
        if job.done:
            return
        limit = int(job.request.max_audio_seconds * job.sample_rate)
        for word, start, *end in output.words:
            if start * job.sample_rate < limit:
                job.push_word(word, start, *end)
        audio = output.audio
        if audio is not None and len(audio):
            room = max(limit - job.samples, 0)
            if room:
                job.push_audio(audio[:room])
            if len(audio) > room or (job.samples >= limit and not output.done):
                if not output.done:
                    self.engine.release(job)
                job.finish(truncated=True)
                self._completed(job)
                return
        if output.done:
            job.finish()
            self._completed(job)

    def _completed(self, job: Job) -> None:
        self.stats.count("completed")
        if job.admitted_at is not None:
            steps = self.stats.steps - job.admitted_step
            self.job_steps = steps if self.job_steps is None else self.job_steps + 0.2 * (steps - self.job_steps)
        if self._on_done is not None:
            self._on_done(job)
