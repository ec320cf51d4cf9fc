"""A bounded in-memory cache of synthesized audio, so a repeated request never reaches a model."""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedAudio:
    audio: bytes
    meta: dict

    @property
    def size(self) -> int:
        return len(self.audio) + 256


class AudioCache:
    """Least-recently-used entries are evicted once the bytes held pass `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: collections.OrderedDict[str, CachedAudio] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(**parts) -> str:
        """A digest of everything that changes the output."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> CachedAudio | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: str, entry: CachedAudio) -> None:
        if entry.size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            self._entries[key] = entry
            self.bytes += entry.size
            while self.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.size

    def __len__(self) -> int:
        return len(self._entries)
