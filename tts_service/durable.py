"""Files written so that a crash leaves the old content or the new, never half of either: the
voice library and the job store both keep what a client was told is there on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def sync_dir(path: Path) -> None:
    """A folder's entries (a rename, a new file) on disk; a filesystem that cannot is let be."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    with open(path, "rb+") as written:
        os.fsync(written.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """`data` at `path`, whole or not at all, even if the process dies midway."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)
