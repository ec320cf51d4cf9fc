"""The service caps glibc's heap arenas, which its many threads would otherwise multiply."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tts_service import heap

# Eight threads allocate at once; glibc's malloc_info then lists one <heap> per arena.
COUNT_ARENAS = r"""
import ctypes, os, sys, tempfile, threading
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "create_app":
    from tts_service import create_app
    create_app()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    blocks = [libc.malloc(200_000) for _ in range(20)]
    barrier.wait()
    for block in blocks:
        libc.free(ctypes.c_void_p(block))
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
path = tempfile.mktemp()
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def _arenas(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", COUNT_ARENAS, root, mode], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(heap._libc() is None or not sys.platform.startswith("linux"), reason="glibc only")
def test_the_app_caps_the_heap_arenas_that_threads_would_multiply():
    assert _arenas("plain") > heap.ARENAS  # without the cap, the threads take arenas of their own
    assert _arenas("create_app") <= heap.ARENAS


def test_an_arena_count_set_by_the_operator_is_left_to_glibc(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.cap_arenas() is False
