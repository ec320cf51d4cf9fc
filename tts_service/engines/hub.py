"""Finding model files: a local directory or a Hugging Face repo, with errors that say what to do."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

HELP = (
    "To fix it: check that this machine can reach huggingface.co; set HF_TOKEN if the repo is gated "
    "(accept its terms on the Hugging Face page first); or download ahead of time with "
    "`python scripts/download_models.py` on a machine with network access and copy the cache "
    "(~/.cache/huggingface) here, then set HF_HUB_OFFLINE=1; or point the setting at a local "
    "directory that holds the files."
)


UNREACHABLE_HELP = (
    "To fix it: let this machine (or container) reach {endpoint} over HTTPS (through HTTPS_PROXY if "
    "it needs a proxy); or download the models where there is network with "
    "`python scripts/download_models.py`, copy that machine's Hugging Face cache "
    "(~/.cache/huggingface/hub by default) to {cache} here and set HF_HUB_OFFLINE=1; or point the "
    "setting at a local directory that holds the files."
)


class ModelDownloadError(RuntimeError):
    """A model file could not be fetched; the message names the repo and the way out.

    `expected` failures (no network, a gated or unknown repo, a missing file) are set-up problems
    whose message says everything: they are logged without a traceback."""

    def __init__(self, message: str, expected: bool = True):
        super().__init__(message)
        self.expected = expected


class _ExpectedFailureFilter(logging.Filter):
    """A record carrying an expected ModelDownloadError keeps its message and loses its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ModelDownloadError) and exc.expected:
            record.msg, record.args = "%s: %s", (record.getMessage(), exc)
            record.exc_info, record.exc_text = None, None
        return True


# A model that fails to load is logged, with its traceback, where engines load (engines/base.py);
# for a download that cannot happen the traceback would only bury the advice in the message.
logging.getLogger("tts_service.engines.base").addFilter(_ExpectedFailureFilter())


def _chain(exc: BaseException):
    """The exception, then what caused it, down to the first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _unreachable(exc: BaseException) -> str | None:
    """Why Hugging Face could not be reached ("Connection refused", ...), if that is what happened."""
    kinds: tuple[type, ...] = (ConnectionError, TimeoutError, socket.gaierror)
    try:
        import requests

        kinds += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - huggingface_hub<1 depends on requests
        pass
    found = [e for e in _chain(exc) if isinstance(e, kinds)]
    if not found:
        return None
    deepest = found[-1]
    detail = getattr(deepest, "strerror", None) or (str(deepest).splitlines() or [""])[0]
    return detail[:160] or type(deepest).__name__


_unreachable_at_start: str | None = None  # why the probe at start could not reach the hub


def probe_at_start(model_ids: list[str], timeout: float = 3.0) -> str | None:
    """Before any model loads: can the hub be reached at all? If not, say so once and read only the
    local cache from then on (as HF_HUB_OFFLINE=1 does), instead of the hub client's own retries
    (long URLs, each file, each engine) before the same conclusion. Returns why it is unreachable."""
    global _unreachable_at_start
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    remote = [m for m in model_ids if m and not looks_like_path(m) and not Path(m).expanduser().exists()]
    if not remote or constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return None
    parts = urlsplit(constants.ENDPOINT)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    _unreachable_at_start = f"{parts.hostname}:{port}: {reason}"
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    logger.warning("Hugging Face (%s) cannot be reached from this machine (%s): models are read from the local "
                   "cache only, without retrying.", constants.ENDPOINT, reason)
    return _unreachable_at_start


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or os.sep in value and Path(value).expanduser().exists()


def download(repo: str, what: str, fetch: Callable[[], T], setting: str) -> T:
    """Run a Hugging Face download, turning its many failures into one clear message."""
    try:
        return fetch()
    except Exception as exc:  # huggingface_hub raises many types; all mean the same to the user
        from huggingface_hub import constants, errors

        where = f"Could not get {what} from Hugging Face repo '{repo}' ({setting})"
        offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        unreachable = _unreachable_at_start or (None if offline else _unreachable(exc))
        expected = True
        # LocalEntryNotFoundError is an EntryNotFoundError: it is asked about first.
        if isinstance(exc, errors.LocalEntryNotFoundError) and offline and not _unreachable_at_start:
            reason = "HF_HUB_OFFLINE is set and the file is not in the local cache"
        elif unreachable is not None or isinstance(exc, errors.LocalEntryNotFoundError):
            raise ModelDownloadError(
                f"{where}: Hugging Face cannot be reached from this machine ({constants.ENDPOINT}: "
                f"{unreachable or 'no answer'}) and the file is not in the local cache. "
                + UNREACHABLE_HELP.format(endpoint=constants.ENDPOINT, cache=constants.HF_HUB_CACHE)
            ) from None
        elif isinstance(exc, errors.GatedRepoError):
            reason = "the repo is gated and this machine has no access (set HF_TOKEN)"
        elif isinstance(exc, errors.RepositoryNotFoundError):
            reason = "the repo does not exist (check the name) or is private (set HF_TOKEN)"
        elif isinstance(exc, errors.EntryNotFoundError):
            reason = "the repo has no such file"
        elif isinstance(exc, (errors.HfHubHTTPError, OSError)):
            reason = f"download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            expected = False
        else:
            raise
        raise ModelDownloadError(f"{where}: {reason}. {HELP}", expected=expected) from exc


def dsm_checkpoint_info(model: str, setting: str = "TTS_DSM_MODEL"):
    """moshi CheckpointInfo for a repo id, or for a local directory with explicit file paths."""
    from moshi.models import loaders

    path = Path(model).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ModelDownloadError(f"{setting}={model!r} is a directory without config.json.")
        config = json.loads(config_path.read_text())
        files = {
            "moshi_weights": path / config.get("moshi_name", loaders.MOSHI_NAME),
            "mimi_weights": path / config.get("mimi_name", loaders.MIMI_NAME),
            "tokenizer": path / config.get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME),
        }
        if config.get("mimi_config_name"):
            files["mimi_config_path"] = path / config["mimi_config_name"]
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise ModelDownloadError(f"{setting}={model!r} is missing {', '.join(missing)}.")
        return loaders.CheckpointInfo.from_hf_repo(str(path), config_path=config_path, **files)
    if looks_like_path(model):
        raise ModelDownloadError(f"{setting}={model!r} is not a directory.")
    from huggingface_hub import hf_hub_download

    logger.info("fetching %s from Hugging Face (download progress below on first start)", model)
    config_path = download(model, "config.json", lambda: hf_hub_download(model, "config.json"), setting)
    return download(model, "the DSM checkpoint",
                    lambda: loaders.CheckpointInfo.from_hf_repo(model, config_path=config_path), setting)


def repo_files(repo: str) -> list[str]:
    """A repository's file names: listed on Hugging Face, or read from the local cache when offline."""
    from huggingface_hub import constants, list_repo_files

    if not constants.HF_HUB_OFFLINE:
        try:
            return list_repo_files(repo)
        except Exception as exc:
            logger.info("listing %s online failed (%s); reading the local cache", repo, type(exc).__name__)
    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    names: set[str] = set()
    if snapshots.is_dir():
        for snapshot in snapshots.iterdir():
            names.update(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    return sorted(names)
