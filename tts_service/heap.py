"""The C heap under torch: how many arenas it keeps, and handing freed pages back to the system.

glibc gives threads their own heap arenas, up to eight per core. The service's threads (HTTP
requests, the workers, a row alone's decoder, Wyoming, voice encoding) each free memory that
another allocated, and every arena keeps its own free pages for later: over the same mixed
traffic (bench/soak.py, 4 clients, 2 cores) the process held about 1.6 GB with glibc's default
and about 1.22 GB with two arenas, flat, at the same request rate. So the service caps them at two
unless `MALLOC_ARENA_MAX` is set, which glibc reads itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import time
from functools import cache

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
_TRIM_EVERY = 30.0
_trimmed_at = [0.0]


@cache
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None  # not glibc: nothing of this applies


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap the heap's arenas before the service's threads start; whether the cap was set here."""
    libc = _libc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def return_freed_memory() -> None:
    """Hand freed heap pages back to the system now, e.g. after a model's float32 weights were
    quantized (about 200 MB a model otherwise stays resident, unused)."""
    gc.collect()
    _trim()


def return_free_heap() -> None:
    """What a worker that has just gone idle calls: `malloc_trim`, at most every 30 s.

    Requests of every size come and go; glibc keeps what they freed for the next ones, which over
    an hour of mixed traffic held about 170 MB more than the service used."""
    now = time.monotonic()
    if now - _trimmed_at[0] < _TRIM_EVERY:
        return
    _trimmed_at[0] = now
    _trim()


def _trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
