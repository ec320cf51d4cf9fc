"""A job's pieces joined into one file, piece by piece (a book never sits whole in memory).

Written with PyAV (FFmpeg): MP3 carries its chapters as ID3v2 CHAP frames and Ogg Opus as CHAPTERxxx
Vorbis comments; FFmpeg writes none into WAV or FLAC (the job's answer lists them for every format).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

# format: (container, codec, sample format, bit rate or None, a rate the codec takes)
FORMATS = {
    "mp3": ("mp3", "libmp3lame", "s16p", 64000, None),
    "opus": ("ogg", "libopus", "s16", 48000, (48000, 24000, 16000, 12000, 8000)),
    "wav": ("wav", "pcm_s16le", "s16", None, None),
    "flac": ("flac", "flac", "s16", None, None),
}
MIME = {"mp3": "audio/mpeg", "opus": "audio/ogg", "wav": "audio/wav", "flac": "audio/flac"}
CHAPTERED = ("mp3", "opus")


def _rate_for(fmt: str, rate: int) -> int:
    allowed = FORMATS[fmt][4]
    return rate if allowed is None or rate in allowed else 48000


def join(path: Path, fmt: str, sample_rate: int, parts: Iterable[np.ndarray],
         chapters: list[dict] | None = None, total_seconds: float | None = None,
         title: str | None = None, should_stop: Callable[[], bool] | None = None) -> None:
    """Encode the float32 mono `parts` at `sample_rate`, in order, into `path` as `fmt`.

    `chapters` are {"title", "start"} in seconds; their ends are the next one's start (the last one's,
    `total_seconds`)."""
    import av

    container_name, codec, sample_format, bit_rate, _ = FORMATS[fmt]
    out_rate = _rate_for(fmt, sample_rate)
    with av.open(str(path), "w", format=container_name) as container:
        stream = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono"
        stream.format = sample_format
        if bit_rate:
            stream.bit_rate = bit_rate
        if title:
            container.metadata["title"] = title
        if chapters and fmt in CHAPTERED:
            marks = []
            for number, chapter in enumerate(chapters):
                end = chapters[number + 1]["start"] if number + 1 < len(chapters) else (total_seconds or chapter["start"])
                marks.append({"id": number + 1, "start": int(round(chapter["start"] * 1000)),
                              "end": int(round(max(end, chapter["start"]) * 1000)),
                              "time_base": Fraction(1, 1000), "metadata": {"title": chapter["title"]}})
            container.set_chapters(marks)
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=out_rate)
        pts = 0
        for part in parts:
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped while joining")
            pcm = (np.clip(np.asarray(part, dtype=np.float32), -1.0, 1.0) * 32767).round().astype(np.int16)
            for start in range(0, len(pcm), sample_rate):  # one second at a time
                frame = av.AudioFrame.from_ndarray(pcm[None, start:start + sample_rate], format="s16", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts, pts = pts, pts + frame.samples
                for converted in resampler.resample(frame):
                    for packet in stream.encode(converted):
                        container.mux(packet)
        for converted in resampler.resample(None):
            for packet in stream.encode(converted):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def read_chapters(path: Path) -> list[dict]:
    """The chapter marks a file carries: {"title", "start"} in seconds (for checks and clients)."""
    import av

    with av.open(str(path)) as container:
        return [{"title": chapter["metadata"].get("title", ""),
                 "start": float(chapter["start"] * chapter["time_base"])}
                for chapter in container.chapters()]
