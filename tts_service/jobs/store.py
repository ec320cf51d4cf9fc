"""The job store: a folder per job under TTS_JOB_STORE, the only state a job has.

    <store>/<id>/text.md          the text as sent (never changed)
    <store>/<id>/plan.json        its pieces and chapters, cut when the job was created
    <store>/<id>/state.json       status, pieces, chapters, progress: replaced atomically (fsync + rename)
    <store>/<id>/pieces/00007.wav one finished piece's audio (16-bit PCM), then
    <store>/<id>/pieces/00007.json  its duration and word times: the piece is done once this file exists
    <store>/<id>/made.log         one line per piece made, appended: a piece made twice would show here
    <store>/<id>/lock             the replica running the job (see `claim`)
    <store>/<id>/audio.<fmt>      the joined file, once every piece is done

Every file is written to a temporary name, flushed to disk and renamed, so a process killed at any
moment leaves either the old file or the new one. Ids are `secrets.token_urlsafe`: a job is found
only by whoever was told its id.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ..durable import write_atomic

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# A lock whose holder has not touched it for this long belongs to a replica that is gone.
LOCK_STALE_SECONDS = 60.0
# This process, as lock files name it: a lock with our host and pid but another token is from a previous life.
_OWNER = {"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(8)}


class StoreFull(Exception):
    """The store holds TTS_JOB_STORE_BYTES already (or the disk is full): nothing more fits."""


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class JobStore:
    """Jobs on disk; every replica sharing the folder sees the same jobs."""

    def __init__(self, root: str | os.PathLike, max_bytes: int, ttl: float):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._size, self._size_at = 0, -1e9

    def open(self) -> "JobStore":
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    # -- paths ---------------------------------------------------------------------------------
    def path(self, job_id: str) -> Path | None:
        """The job's folder, or None for an id that is not one (never a path outside the store)."""
        if not isinstance(job_id, str) or not _ID.match(job_id):
            return None
        folder = self.root / job_id
        return folder if (folder / "state.json").is_file() else None

    def piece_path(self, job_id: str, index: int, ext: str = "wav") -> Path:
        return self.root / job_id / "pieces" / f"{index:05d}.{ext}"

    # -- jobs ------------------------------------------------------------------------------------
    def create(self, text: str, state: dict, plan: dict) -> str:
        """A new job folder with its text and state; raises StoreFull when the store is at its limit."""
        if self.size() + len(text.encode("utf-8")) > self.max_bytes:
            raise StoreFull(f"the job store holds its limit of {self.max_bytes} bytes; delete finished jobs "
                            "or try later")
        job_id = secrets.token_urlsafe(18)
        folder = self.root / job_id
        try:
            (folder / "pieces").mkdir(parents=True)
            write_atomic(folder / "text.md", text.encode("utf-8"))
            write_atomic(folder / "plan.json", json.dumps(plan).encode("utf-8"))
            state = {**state, "id": job_id}
            write_atomic(folder / "state.json", json.dumps(state).encode("utf-8"))  # last: the job now exists
            self._grew(len(text.encode("utf-8")) + 1024)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if disk_full(exc):
                raise StoreFull("the disk under the job store is full") from None
            raise
        return job_id

    def text(self, job_id: str) -> str:
        return (self.root / job_id / "text.md").read_text(encoding="utf-8")

    def plan(self, job_id: str) -> dict:
        """The job's pieces and chapters, cut once when it was created (so a resumed job keeps its cut)."""
        return json.loads((self.root / job_id / "plan.json").read_text(encoding="utf-8"))

    def state(self, job_id: str) -> dict | None:
        folder = self.path(job_id)
        if folder is None:
            return None
        try:
            return json.loads((folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # removed meanwhile

    def save(self, state: dict) -> None:
        state["updated"] = time.time()
        write_atomic(self.root / state["id"] / "state.json", json.dumps(state).encode("utf-8"))

    def ids(self) -> list[str]:
        """Every job's id, oldest first."""
        found = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            if _ID.match(entry.name) and os.path.isfile(os.path.join(entry.path, "state.json")):
                try:
                    found.append((os.stat(os.path.join(entry.path, "text.md")).st_mtime, entry.name))
                except OSError:
                    continue
        return [name for _, name in sorted(found)]

    def states(self) -> list[dict]:
        return [state for state in (self.state(job_id) for job_id in self.ids()) if state is not None]

    def remove(self, job_id: str) -> None:
        folder = self.root / job_id
        if not _ID.match(job_id) or not folder.is_dir():
            return
        # Renamed first: other replicas stop finding it at once, and a half-removed folder is never a job.
        gone = self.root / f".removed-{job_id}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, gone)
        except OSError:
            return
        shutil.rmtree(gone, ignore_errors=True)
        self._size_at = -1e9  # counted again next time

    def size(self, max_age: float = 2.0) -> int:
        """Bytes in the store: counted again at most every `max_age` seconds (other replicas write too),
        with this process's own writes added in between."""
        now = time.monotonic()
        if now - self._size_at > max_age:
            self._size, self._size_at = self._count(), now
        return self._size

    def _grew(self, count: int) -> None:
        self._size += count

    def _count(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def expire(self, now: float | None = None) -> list[str]:
        """Remove jobs finished more than `ttl` seconds ago (and leftovers of removals); their ids."""
        now = time.time() if now is None else now
        removed = []
        for job_id in self.ids():
            state = self.state(job_id)
            if state and state.get("status") in FINISHED and now - state.get("finished", now) > self.ttl:
                self.remove(job_id)
                removed.append(job_id)
        for entry in self.root.glob(".removed-*"):
            shutil.rmtree(entry, ignore_errors=True)
        return removed

    # -- pieces ----------------------------------------------------------------------------------
    def write_piece(self, job_id: str, index: int, audio: np.ndarray, sample_rate: int, meta: dict) -> None:
        """A finished piece: its audio first, then its description, which marks it done."""
        buffer = io.BytesIO()
        sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
        data = buffer.getvalue()
        description = json.dumps(meta).encode("utf-8")
        if self.size() + len(data) + len(description) > self.max_bytes:
            raise StoreFull(f"the job store reached its limit of {self.max_bytes} bytes")
        write_atomic(self.piece_path(job_id, index), data)
        write_atomic(self.piece_path(job_id, index, "json"), description)
        self._grew(len(data) + len(description))
        with open(self.root / job_id / "made.log", "a", encoding="utf-8") as log:
            log.write(f"{index}\n")
            log.flush()
            os.fsync(log.fileno())

    def piece_done(self, job_id: str, index: int) -> dict | None:
        try:
            return json.loads(self.piece_path(job_id, index, "json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def piece_audio(self, job_id: str, index: int) -> tuple[np.ndarray, int]:
        audio, rate = sf.read(self.piece_path(job_id, index), dtype="float32")
        return audio, rate

    def made(self, job_id: str) -> list[int]:
        """Every piece made, in the order they were made (a piece made twice is listed twice)."""
        try:
            lines = (self.root / job_id / "made.log").read_text(encoding="utf-8").split()
        except OSError:
            return []
        return [int(line) for line in lines]

    # -- claiming: one replica runs a job ------------------------------------------------------
    def claim(self, job_id: str) -> bool:
        """Take the job's lock file; False when a live replica holds it. A stale lock (its holder gone) is
        moved aside by a rename, which only one replica can win, before it is taken."""
        lock = self.root / job_id / "lock"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(lock):
                    return False
                try:
                    os.replace(lock, lock.with_name(f".lock-stale-{_OWNER['token']}"))
                    lock.with_name(f".lock-stale-{_OWNER['token']}").unlink(missing_ok=True)
                except OSError:
                    return False
                continue
            except (FileNotFoundError, NotADirectoryError):
                return False  # removed meanwhile
            with os.fdopen(fd, "w") as handle:
                json.dump(_OWNER, handle)
                handle.flush()
                os.fsync(handle.fileno())
            return True
        return False

    def holds(self, job_id: str) -> bool:
        try:
            return json.loads((self.root / job_id / "lock").read_text()) == _OWNER
        except (OSError, ValueError):
            return False

    def touch_lock(self, job_id: str) -> None:
        try:
            os.utime(self.root / job_id / "lock")
        except OSError:
            pass

    def release(self, job_id: str) -> None:
        if self.holds(job_id):
            (self.root / job_id / "lock").unlink(missing_ok=True)

    @staticmethod
    def _stale(lock: Path) -> bool:
        try:
            owner = json.loads(lock.read_text())
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False  # being written right now
        if owner.get("host") == _OWNER["host"]:
            if owner.get("pid") == _OWNER["pid"]:
                return owner.get("token") != _OWNER["token"]  # same pid, earlier life (a container's pid 1)
            try:
                os.kill(int(owner.get("pid", 0)), 0)
            except ProcessLookupError:
                return True  # its process is gone
            except (OSError, ValueError):
                pass
        return age > LOCK_STALE_SECONDS
