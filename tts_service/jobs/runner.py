"""The background runner: one thread per service speaks queued jobs, piece by piece, through the core.

Each piece is a whole text given to `speech.whole.speak` with `background=True`: the scheduler
admits it only when no live request waits and never into the last free row while live requests
run, so live speech keeps its pace. A piece's audio and words are on disk before the job's state
counts it; at start (and whenever a job's lock is stale) a job not finished goes on from its first
piece not done, so a kill at any moment loses at most the piece being made and never makes one twice.

Replicas sharing one store each run a runner; a job is run by the one that holds its lock file
(`JobStore.claim`), refreshed every few seconds while it runs, and taken over once its holder is gone.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ..speech import refusals
from ..speech.events import Error
from ..speech.refusals import Refusal
from ..speech.request import SpeechRequest
from ..speech.voices import resolve
from ..speech.whole import speak
from . import audio as joined
from .store import ACTIVE, JobStore, StoreFull, disk_full

logger = logging.getLogger(__name__)

PIECE_PAUSE = 0.4  # silence between two pieces
CHAPTER_PAUSE = 1.0  # silence before a chapter's heading
POLL_SECONDS = 1.0  # how often an idle runner looks for work another replica queued
HEARTBEAT_SECONDS = 5.0
EXPIRE_SECONDS = 60.0
GIVE_UP_SECONDS = 600.0  # an engine unavailable for this long fails the job
TRANSIENT = (refusals.BUSY, refusals.UNAVAILABLE, refusals.TIMED_OUT)


def offsets(plan: dict, durations: list[float]) -> list[float]:
    """Where each piece starts in the joined file, for the pieces whose start is known (all before it done)."""
    chapter_starts = {chapter["piece"] for chapter in plan["chapters"]}
    starts = []
    at = 0.0
    for index, duration in enumerate(durations):
        if index:
            at += CHAPTER_PAUSE if index in chapter_starts else PIECE_PAUSE
        starts.append(at)
        at += duration
    if len(durations) < len(plan["pieces"]) and durations:
        at += CHAPTER_PAUSE if len(durations) in chapter_starts else PIECE_PAUSE
    return starts + ([at] if len(durations) < len(plan["pieces"]) else [])


def total_seconds(plan: dict, durations: list[float]) -> float:
    starts = offsets(plan, durations)
    return starts[len(durations) - 1] + durations[-1] if durations else 0.0


class _Watch:
    """The piece being spoken; stopping it ends `speak` at once and frees the engine's row."""

    def __init__(self):
        self.session = None
        self.stopped = False
        self._lock = threading.Lock()

    def track(self, session) -> None:
        with self._lock:
            self.session = session
            if self.stopped:
                self._end()

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self.session is not None:
                self._end()

    def _end(self) -> None:
        self.session.cancel()  # its jobs leave the engine at the worker's next step
        self.session.on_event(Error(Refusal(refusals.BUSY, "the job was stopped")))  # `speak` returns now


class JobRunner:
    """Started and stopped with the service (one of its `doors`)."""

    def __init__(self, service):
        self.service = service
        settings = service.settings
        self.store = JobStore(settings.job_store, settings.job_store_bytes, settings.job_ttl)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat: threading.Thread | None = None
        self._current: str | None = None
        self._watch: _Watch | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.store.open()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="tts-jobs", daemon=True)
        self._beat = threading.Thread(target=self._heartbeat, name="tts-jobs-lock", daemon=True)
        self._thread.start()
        self._beat.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the piece being made (its job stays unfinished, for whichever runner starts next)."""
        self._stopping.set()
        self._wake.set()
        self._stop_current()
        for thread in (self._thread, self._beat):
            if thread is not None:
                thread.join(timeout)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """The job was deleted: stop its piece now if this runner is making it."""
        with self._lock:
            if self._current == job_id:
                self._stop_current()

    @property
    def current(self) -> str | None:
        return self._current

    def _stop_current(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.stop()

    # -- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        expired_at = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - expired_at > EXPIRE_SECONDS:
                expired_at = time.monotonic()
                try:
                    for job_id in self.store.expire():
                        logger.info("job %s expired (TTS_JOB_TTL)", job_id)
                except OSError as exc:
                    logger.warning("could not remove expired jobs: %s", exc)
            job_id = self._claim_next()
            if job_id is None:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            with self._lock:
                self._current = job_id
            try:
                self._run_job(job_id)
            except Exception:
                logger.exception("job %s failed", job_id)
                self._fail(job_id, "Internal error while making the audio; see the server log.")
            finally:
                with self._lock:
                    self._current, self._watch = None, None
                self.store.release(job_id)

    def _claim_next(self) -> str | None:
        waiting = sorted((state for state in self.store.states() if state.get("status") in ACTIVE),
                         key=lambda state: state.get("created", 0))
        for state in waiting:
            if self._stopping.is_set() or not self.store.claim(state["id"]):
                continue
            fresh = self.store.state(state["id"])  # another replica may have finished it meanwhile
            if fresh is not None and fresh.get("status") in ACTIVE:
                return state["id"]
            self.store.release(state["id"])
        return None

    def _heartbeat(self) -> None:
        """Keep the current job's lock fresh; a job removed by any replica is stopped here."""
        beat = 0.0
        while not self._stopping.wait(0.25):
            job_id = self._current
            if job_id is None:
                continue
            if self.store.path(job_id) is None:
                self.cancel(job_id)
            elif time.monotonic() - beat > HEARTBEAT_SECONDS:
                beat = time.monotonic()
                self.store.touch_lock(job_id)

    # -- one job ---------------------------------------------------------------------------------
    def _run_job(self, job_id: str) -> None:
        store = self.store
        state, plan = store.state(job_id), store.plan(job_id)
        pieces = plan["pieces"]
        durations: list[float] = []
        done_chars = 0
        for index in range(len(pieces)):  # what is on disk counts, whatever the state says
            meta = store.piece_done(job_id, index)
            if meta is None:
                break
            durations.append(meta["duration"])
            done_chars += len(pieces[index]["text"])
        state.update(status="running", pieces_done=len(durations), characters_done=done_chars,
                     durations=durations, audio_seconds=round(total_seconds(plan, durations), 3), error=None)
        state.setdefault("started", time.time())
        if not self._save(state):
            return
        logger.info("job %s: %s from piece %d of %d", job_id, "resumed" if durations else "started",
                    len(durations) + 1, len(pieces))
        sample_rate = state.get("sample_rate")
        for index in range(len(durations), len(pieces)):
            if self._stopping.is_set():
                return
            started = time.monotonic()
            spoken = self._speak(job_id, state, pieces[index]["text"])
            if spoken is None:
                return  # stopped, removed or failed (said in the state)
            audio, rate, words = spoken
            sample_rate = sample_rate or rate
            meta = {"duration": round(len(audio) / rate, 3), "sample_rate": rate,
                    "words": [[word.text, word.start, word.stop, word.written] for word in words]}
            try:
                store.write_piece(job_id, index, audio, rate, meta)
            except StoreFull as exc:
                self._fail(job_id, f"The job store is full: {exc}.")
                return
            except OSError as exc:
                if store.path(job_id) is None:
                    return  # removed while it was written
                if disk_full(exc):
                    self._fail(job_id, f"The disk under the job store is full ({exc.strerror}); free space and "
                                       "send the text again.")
                    return
                raise
            durations.append(meta["duration"])
            state.update(pieces_done=len(durations), sample_rate=sample_rate,
                         characters_done=state["characters_done"] + len(pieces[index]["text"]),
                         audio_seconds=round(total_seconds(plan, durations), 3), durations=durations,
                         run_seconds=round(state.get("run_seconds", 0.0) + time.monotonic() - started, 3))
            if not self._save(state):
                return
        self._join(job_id, state, plan, durations)

    def _speak(self, job_id: str, state: dict, text: str):
        """(audio, rate, words) of one piece; None when the job stopped. Waits out a busy or loading engine."""
        request = SpeechRequest(text=text, language=state.get("language"), voice=state.get("voice"),
                                clean=state.get("clean", True), normalize=state.get("normalize"),
                                background=True)
        waited_since = None
        while not self._stopping.is_set():
            watch = _Watch()
            with self._lock:
                if self._current != job_id:
                    return None
                self._watch = watch
            try:
                spoken = speak(self.service, request, watch)
                return spoken.audio, spoken.sample_rate, spoken.words
            except Refusal as refusal:
                if watch.stopped or self.store.path(job_id) is None:
                    return None
                if refusal.kind == refusals.NOTHING_TO_SAY:
                    rate = self._rate(state)
                    return np.zeros(0, dtype=np.float32), rate, []
                if refusal.kind not in TRANSIENT:
                    self._fail(job_id, refusal.message)
                    return None
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > GIVE_UP_SECONDS:
                    self._fail(job_id, f"The engine stayed unavailable: {refusal.message}")
                    return None
                self._stopping.wait(min(refusal.retry_after or 1, 5))
        return None

    def _rate(self, state: dict) -> int:
        return state.get("sample_rate") or resolve(self.service.router, state.get("language"), None).route.engine.sample_rate

    def _join(self, job_id: str, state: dict, plan: dict, durations: list[float]) -> None:
        store = self.store
        fmt = state["format"]
        rate = state.get("sample_rate") or self._rate(state)
        starts = offsets(plan, durations)
        chapters = [{"title": chapter["title"], "start": round(starts[chapter["piece"]], 3)}
                    for chapter in plan["chapters"] if chapter["piece"] < len(durations)]

        def parts():
            for index in range(len(durations)):
                if index:
                    gap = starts[index] - starts[index - 1] - durations[index - 1]
                    yield np.zeros(int(round(gap * rate)), dtype=np.float32)
                if durations[index] > 0:
                    yield store.piece_audio(job_id, index)[0]

        folder = store.root / job_id
        final = folder / f"audio.{fmt}"
        partial = folder / f".audio.{fmt}.partial"
        try:
            joined.join(partial, fmt, rate, parts(), chapters, total_seconds(plan, durations),
                        title=chapters[0]["title"] if chapters else None,
                        should_stop=lambda: self._stopping.is_set() or store.path(job_id) is None)
            size = partial.stat().st_size
            if store.size() + size > store.max_bytes:
                partial.unlink(missing_ok=True)
                self._fail(job_id, f"The job store is full: the joined file needs {size} more bytes than its "
                                   f"limit of {store.max_bytes} allows.")
                return
            partial.replace(final)
            store._grew(size)
        except InterruptedError:
            partial.unlink(missing_ok=True)
            return
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if store.path(job_id) is None:
                return
            if disk_full(exc):
                self._fail(job_id, f"The disk under the job store is full ({exc.strerror}); free space and send "
                                   "the text again.")
                return
            raise
        state.update(status="done", finished=time.time(), chapters_at=chapters, bytes=size)
        self._save(state)
        logger.info("job %s done: %d pieces, %.1f s of audio", job_id, len(durations), state["audio_seconds"])

    def _save(self, state: dict) -> bool:
        """Save the state; False when the job was removed meanwhile (its folder is gone)."""
        if self.store.path(state["id"]) is None:
            return False
        try:
            self.store.save(state)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if disk_full(exc):
                logger.error("job %s: the disk under the job store is full; its progress is on disk up to here",
                             state["id"])
                return False
            raise
        return True

    def _fail(self, job_id: str, reason: str) -> None:
        state = self.store.state(job_id)
        if state is None:
            return
        logger.warning("job %s failed: %s", job_id, reason)
        state.update(status="failed", error=reason, finished=time.time())
        try:
            self.store.save(state)
        except OSError as exc:
            logger.error("job %s: could not record its failure: %s", job_id, exc)
