#!/usr/bin/env python3
"""Download ahead of time every model file the configured routes need, into the Hugging Face cache.

    .venv/bin/python scripts/download_models.py          # what the current settings would load
    HF_HUB_OFFLINE=1 ./start_kyutai.sh                   # later: start without touching the network

Run it on the VM before the first start (or on any machine, then copy ~/.cache/huggingface).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tts_service.config import ConfigError, Settings  # noqa: E402
from tts_service.engines.hub import ModelDownloadError, download, looks_like_path  # noqa: E402
from tts_service.routing import Router  # noqa: E402


def download_dsm(settings: Settings) -> None:
    from huggingface_hub import hf_hub_download

    repo = settings.dsm_model
    if Path(repo).expanduser().is_dir():
        print(f"DSM model is the local directory {repo}: nothing to download")
    else:
        config = json.loads(Path(download(repo, "config.json", lambda: hf_hub_download(repo, "config.json"),
                                          "TTS_DSM_MODEL")).read_text())
        names = [config.get("moshi_name", "model.safetensors"), config.get("mimi_name"),
                 config.get("tokenizer_name"), config.get("mimi_config_name")]
        for name in filter(None, names):
            print(f"{repo}: {name}")
            download(repo, name, lambda name=name: hf_hub_download(repo, name), "TTS_DSM_MODEL")
        signature = f".{config['model_id']['sig']}@{config['model_id']['epoch']}.safetensors"
        voice = settings.dsm_voice
        if not looks_like_path(voice):
            print(f"{settings.dsm_voice_repo}: {voice}{signature}")
            download(settings.dsm_voice_repo, f"voice {voice!r}",
                     lambda: hf_hub_download(settings.dsm_voice_repo, voice + signature), "TTS_DSM_VOICE")


def main() -> int:
    logging.basicConfig(level="INFO", format="%(message)s")
    try:
        settings = Settings.from_env(preload=False)
        router = Router(settings)
    except (ConfigError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        for key, scheduler in router.schedulers.items():
            if key == "dsm":
                download_dsm(settings)
            else:
                print(f"{key}: loading once to fetch its files")
                scheduler.engine.load()
    except (ModelDownloadError, Exception) as exc:  # the message says what to do
        print(f"download failed: {exc}", file=sys.stderr)
        return 1
    print("all model files are in the local Hugging Face cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
