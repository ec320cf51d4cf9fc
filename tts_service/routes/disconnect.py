"""Notice a client that leaves while its non-streaming request is still being generated.

A WSGI handler that waits for a whole answer learns of a closed connection only when it writes,
which is after all the work is done. So while a request waits for its jobs, one watcher thread
peeks at the client's socket every `INTERVAL` seconds: a non-blocking `recv(MSG_PEEK)` that
returns b"" (or fails with a reset) means the client closed, and the request's jobs are
cancelled, which frees their slots at the worker's next step. The servers expose the socket in
the WSGI environ: werkzeug as `werkzeug.socket`, gunicorn as `gunicorn.socket`. Where neither is
present (a test client, another server) nothing is watched and the request runs to the end.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Iterator

logger = logging.getLogger(__name__)

INTERVAL = 0.2
SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def client_socket(environ) -> socket.socket | None:
    for key in SOCKET_KEYS:
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            return sock
    return None


def client_gone(sock: socket.socket) -> bool:
    """True when the peer closed or reset the connection; never blocks, never consumes data."""
    try:
        # socket.socket.recv, not the TLS wrapper's: the TCP close is what matters here.
        data = socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing sent: the usual case
    except OSError:
        return True  # reset, or the socket was closed under us
    return data == b""  # b"": orderly close; bytes: a pipelined next request, still there


class Watch:
    """The jobs of one request, cancelled together when its client leaves."""

    def __init__(self, sock: socket.socket | None, label: str = ""):
        self.sock = sock
        self.label = label
        self.left = threading.Event()
        self._jobs: list = []
        self._lock = threading.Lock()

    def track(self, job):
        """Remember a submitted job; cancel it at once if the client already left."""
        with self._lock:
            self._jobs.append(job)
        if self.left.is_set():
            job.cancel()
        return job

    def client_left(self) -> None:
        self.left.set()
        with self._lock:
            jobs = list(self._jobs)
        logger.info("client left request %s; dropping its %d job(s)", self.label or "-", len(jobs))
        for job in jobs:
            job.cancel()


class _Watcher:
    """One daemon thread polls every watched socket; it sleeps while nothing is watched."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._changed:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tts-disconnect-watch", daemon=True)
                self._thread.start()
            self._changed.notify()

    def discard(self, watch: Watch) -> None:
        with self._changed:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._watches:
                    self._changed.wait()
                watches = list(self._watches)
            for watch in watches:
                if client_gone(watch.sock):
                    self.discard(watch)
                    watch.client_left()
            with self._changed:
                self._changed.wait(INTERVAL)


_watcher = _Watcher()


def start_watch(environ, label: str = "") -> Watch:
    """Watch the request's client from now until `stop_watch`: for an answer streamed by a generator,
    which outlives the view. A streamed answer learns of a client that left only when a write fails,
    and nothing is written while it waits for its first audio; the watch notices either way."""
    watch = Watch(client_socket(environ), label)
    if watch.sock is not None:
        _watcher.add(watch)
    return watch


def stop_watch(watch: Watch) -> None:
    if watch.sock is not None:
        _watcher.discard(watch)


@contextlib.contextmanager
def watch_client(environ, label: str = "") -> Iterator[Watch]:
    """While the block runs, jobs given to `watch.track` are cancelled if the client leaves."""
    watch = start_watch(environ, label)
    try:
        yield watch
    finally:
        stop_watch(watch)
