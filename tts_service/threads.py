"""torch's CPU threads: how many per operation, and giving a thread's helpers back when it idles.

PyPI's torch runs its operations on OpenMP (GNU libgomp), which gives every thread that runs one
its own team of helper threads. Between operations the helpers spin for a moment, so that the
next of the hundreds of small operations in a Pocket TTS frame starts at once, but libgomp
shortens that spin to almost nothing as soon as it manages more threads than there are cores:
from then on every operation waits for its helpers to wake up. One more thread holding a team
(another language's worker that spoke once, a request thread that loaded a model) made every
Pocket TTS frame on a 2-core machine take 1.7 times as long. So a thread that has run torch and
goes idle gives its team back (`omp_pause_resource_all`, OpenMP 5.0), and only the workers that
are generating hold one.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from functools import cache

from .config import Settings

logger = logging.getLogger(__name__)

_SOFT_PAUSE = 1  # omp_pause_soft: the helper threads end; the next operation starts new ones


def set_torch_threads(settings: Settings, pocket: bool) -> int:
    """torch's threads per operation, once for the process (pocket-tts sets 1 when imported)."""
    import torch

    if pocket:
        import pocket_tts.models.tts_model  # noqa: F401  (its import sets the thread count to 1)
    threads = settings.torch_threads or _omp_num_threads() or len(os.sched_getaffinity(0)) or 1
    torch.set_num_threads(threads)
    logger.info("torch uses %d thread(s) per operation", threads)
    return threads


def _omp_num_threads() -> int:
    """OMP_NUM_THREADS, the usual way to give a process fewer cores (replicas sharing a machine)."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]), 0)
    except ValueError:
        return 0


@cache
def _pause_resources():
    """OpenMP's `omp_pause_resource_all` as torch loaded it, or None (no OpenMP 5.0 runtime)."""
    try:
        function = ctypes.CDLL(None).omp_pause_resource_all
    except (OSError, AttributeError):
        logger.info("no omp_pause_resource_all in this process: idle threads keep their helpers")
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


@cache
def _set_omp_threads():
    """OpenMP's `omp_set_num_threads` as torch loaded it, or None."""
    try:
        function = ctypes.CDLL(None).omp_set_num_threads
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = None
    return function


def set_own_threads(count: int) -> bool:
    """The calling thread's torch threads per operation, every other thread's left as it is.

    OpenMP keeps the count per thread. `torch.set_num_threads` would also change the count that
    each thread copies at its first operation, and with it a worker that has not run yet; so
    this thread takes its copy first, then its own count is set through OpenMP. False where
    torch does not run on libgomp's OpenMP."""
    import torch

    torch.get_num_threads()  # this thread's copy of the process's count is made now
    function = _set_omp_threads()
    if function is None:
        return False
    function(count)
    return torch.get_num_threads() == count


def release_helpers() -> None:
    """Give back the OpenMP helper threads of the calling thread, which stops running torch for now."""
    if "torch" not in sys.modules:
        return  # nothing has run an operation (and nothing to load torch for)
    pause = _pause_resources()
    if pause is not None:
        pause(_SOFT_PAUSE)
