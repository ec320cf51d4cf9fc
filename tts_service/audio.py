"""Audio encoding with libsndfile (through soundfile), and the pieces of a streamed WAV."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

# format name -> (soundfile container, subtype, MIME type)
FORMATS: dict[str, tuple[str, str | None, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "pcm": ("RAW", "PCM_16", "audio/L16"),
}


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to 16-bit little-endian PCM."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def encode(audio: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encode mono float audio into `fmt` (a key of FORMATS)."""
    if fmt == "pcm":
        return to_pcm16(audio)
    container, subtype, _ = FORMATS[fmt]
    buffer = io.BytesIO()
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if fmt == "opus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError(f"Opus cannot encode at {sample_rate} Hz")
    sf.write(buffer, data, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def mime_type(fmt: str, sample_rate: int | None = None) -> str:
    mime = FORMATS[fmt][2]
    if fmt == "pcm" and sample_rate:
        return f"{mime};rate={sample_rate};channels=1"
    return mime


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header for a stream whose length is not known yet.

    The RIFF and data sizes are set to 0xFFFFFFFF, which players such as ffplay, browsers and
    soundfile read as "until the end of the stream"."""
    byte_rate = sample_rate * channels * 2
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
            + b"data" + struct.pack("<I", unknown))


def is_silent(audio: np.ndarray, threshold: float = 1e-4) -> bool:
    return audio.size == 0 or float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < threshold
