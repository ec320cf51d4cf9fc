"""torch's threads per operation are set per thread: a helper's count leaves the others alone."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import torch

from tts_service.threads import set_own_threads


def _count() -> int:
    torch.ones(64, 64) @ torch.ones(64, 64)  # an operation: the thread's count is in use
    return torch.get_num_threads()


def test_a_thread_sets_only_its_own_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            if not pool.submit(set_own_threads, 1).result():
                pytest.skip("torch does not run on GNU OpenMP here")
            assert pool.submit(_count).result() == 1
            assert _count() == 2  # this thread keeps its own
            later = []
            thread = threading.Thread(target=lambda: later.append(_count()))
            thread.start()
            thread.join()
            assert later == [2]  # a thread started later takes the process's count, not the helper's
    finally:
        torch.set_num_threads(before)
