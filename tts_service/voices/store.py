"""The voice store on disk (`TTS_VOICE_STORE`): one folder per voice, each written whole or not at all.

    <store>/voice_<24 hex>/voice.json       id, name, created_at, consent, one state per language
    <store>/voice_<24 hex>/<language>.safetensors
    <store>/voice_<24 hex>/sample.wav        only with TTS_VOICE_KEEP_RECORDING

A new voice is written under a temporary name and renamed into place, a deleted one renamed away
before it is removed, a state added later written beside the others and renamed: a crash leaves
either the whole change or nothing, and what a crash cut short is cleared at the next start.
Replicas may share the folder. This module knows files only: which engine speaks a voice, and
when, is the library's (`library.py`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..durable import sync_dir, sync_file, write_atomic

logger = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
VOICE_ID = re.compile(r"voice_[0-9a-f]{24}")
META = "voice.json"
RECORDING = "sample.wav"


@dataclass
class CustomVoice:
    id: str
    name: str
    created_at: int
    consent: str | None = None
    states: dict = field(default_factory=dict)  # language -> {"model": model id, "file": "<language>.safetensors"}
    recording: bool = False

    def public(self) -> dict:
        """What clients see: OpenAI's voice object, and the languages that speak it (no file, no state)."""
        return {"id": self.id, "object": "audio.voice", "name": self.name, "created_at": self.created_at,
                "type": "audio_sample", "languages": sorted(self.states)}

    def meta(self) -> dict:
        return {"id": self.id, "name": self.name, "created_at": self.created_at, "consent": self.consent,
                "states": self.states, "recording": self.recording}

    def meta_bytes(self) -> bytes:
        return json.dumps(self.meta(), ensure_ascii=False, indent=1).encode("utf-8")


# Writes one language's state to a path (the engine's `write_voice_state`).
StateWriter = Callable[[Path], None]


class VoiceStore:
    def __init__(self, root: Path):
        self.root = root

    def clear_leftovers(self) -> None:
        """A write or a delete that a crash cut short."""
        if self.root.is_dir():
            for leftover in list(self.root.glob(".tmp-*")) + list(self.root.glob(".trash-*")):
                shutil.rmtree(leftover, ignore_errors=True)

    def read(self) -> dict[str, CustomVoice]:
        """Every whole voice on disk, by id; a folder whose voice.json cannot be read is left out."""
        voices = {}
        if not self.root.is_dir():
            return voices
        for folder in sorted(self.root.iterdir()):
            if not VOICE_ID.fullmatch(folder.name):
                continue
            try:
                meta = json.loads((folder / META).read_text(encoding="utf-8"))
                voice = CustomVoice(id=meta["id"], name=meta["name"], created_at=int(meta["created_at"]),
                                    consent=meta.get("consent"), states=dict(meta.get("states") or {}),
                                    recording=bool(meta.get("recording")))
            except (OSError, ValueError, KeyError, TypeError):
                logger.warning("voice %s left out: its voice.json cannot be read", folder.name)
                continue
            if voice.id == folder.name and NAME.fullmatch(voice.name):
                voices[voice.id] = voice
        return voices

    def has(self, voice_id: str) -> bool:
        return (self.root / voice_id).is_dir()

    def state_path(self, voice: CustomVoice, language: str) -> Path:
        return self.root / voice.id / voice.states[language]["file"]

    def write_new(self, voice: CustomVoice, states: list[tuple[str, str, StateWriter]], recording: bytes | None,
                  commit: Callable[[Callable[[], None]], bool]) -> bool:
        """Write `voice` whole: (language, model id, writer) per state, its recording when kept. The
        rename into place is handed to `commit`, which may refuse it (the voice is then removed);
        returns whether it was placed. `voice.states` is filled as written, emptied on failure."""
        folder = self.root / f".tmp-{voice.id}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
            for language, model_id, write in states:
                write(folder / f"{language}.safetensors")
                sync_file(folder / f"{language}.safetensors")
                voice.states[language] = {"model": model_id, "file": f"{language}.safetensors"}
            if recording is not None:
                write_atomic(folder / RECORDING, recording)
            write_atomic(folder / META, voice.meta_bytes())
            sync_dir(folder)
            if not commit(lambda: os.rename(folder, self.root / voice.id)):
                shutil.rmtree(folder, ignore_errors=True)
                voice.states.clear()
                return False
            sync_dir(self.root)
            return True
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            voice.states.clear()
            raise

    def recording(self, voice: CustomVoice):
        """The kept recording's 16-bit samples."""
        import soundfile as sf

        pcm, _ = sf.read(self.root / voice.id / RECORDING, dtype="int16")
        return pcm

    def add_state(self, voice: CustomVoice, language: str, write: StateWriter) -> str:
        """One more language's state beside a voice's others (its voice.json next: `write_meta`);
        returns the state's file name."""
        folder = self.root / voice.id
        file = f"{language}.safetensors"
        partial = folder / f".{file}.tmp"
        write(partial)
        sync_file(partial)
        os.replace(partial, folder / file)
        return file

    def write_meta(self, voice: CustomVoice) -> None:
        meta = self.root / voice.id / f".{META}.tmp"
        write_atomic(meta, voice.meta_bytes())
        os.replace(meta, self.root / voice.id / META)

    def take_away(self, voice_id: str) -> Path | None:
        """Rename the voice's folder out of the store (to be removed with `shutil.rmtree`); None when
        another replica removed it first."""
        trash = self.root / f".trash-{voice_id}"
        try:
            os.rename(self.root / voice_id, trash)
        except FileNotFoundError:
            return None
        return trash
