"""A voice recording made ready for cloning: decoded, checked, cleaned and cut.

Any file FFmpeg (PyAV) decodes is accepted. Decoding stops as soon as more than `MAX_SECONDS`
(OpenAI's limit for a voice sample) has come out, so that a long or lying file costs no more than
that. The audio is mixed to mono and resampled to the models' 24 kHz, its leading and trailing
silence trimmed, its loudness brought to one level, cut to the seconds the voice is made from, and
rounded to 16 bits: the prompt is then exactly what a 16-bit WAV of it holds, so that the state
made from it equals the one `pocket-tts export-voice` makes from that WAV.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..speech.refusals import BAD_REQUEST, Refusal

RATE = 24000
MAX_SECONDS = 30.0
MIN_SPEECH_SECONDS = 1.0
FRAME = RATE // 50  # 20 ms, the unit of the silence measure
SILENCE_DB = -50.0  # a frame quieter than this (dBFS) is silence, whatever the recording
DYNAMIC_DB = 40.0  # ... and so is one this far below the loudest frame
KEEP_BEFORE, KEEP_AFTER = 0.1, 0.25  # seconds kept around the speech when trimming
TARGET_RMS_DB = -20.0  # loudness of the speech after normalising
PEAK = 0.95
DECLARED_SLACK = 0.5  # seconds a container's declared length may exceed what decodes


def sample_error(message: str, code: str = "invalid_audio") -> Refusal:
    """Why a recording cannot make a voice, for the client."""
    return Refusal(BAD_REQUEST, message, code=code, param="audio_sample")


@dataclass
class PreparedSample:
    pcm: np.ndarray  # int16, mono, 24 kHz: what the voice is made from
    speech_seconds: float
    source_seconds: float

    @property
    def samples(self) -> np.ndarray:
        """The prompt as float samples, exactly as a 16-bit WAV of it reads back."""
        return self.pcm.astype(np.float32) / 32768.0

    def wav(self) -> bytes:
        import soundfile as sf

        out = io.BytesIO()
        sf.write(out, self.pcm, RATE, format="WAV", subtype="PCM_16")
        return out.getvalue()


def decode(data: bytes, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 samples at 24 kHz; a refusal when not audio, damaged, or over `max_seconds`."""
    import av

    if _wav_is_cut(data):
        raise sample_error("'audio_sample' is truncated: its WAV header says more audio than the file holds.",
                          code="invalid_audio")
    too_long = sample_error(f"The recording is longer than {max_seconds:g} s; send at most {max_seconds:g} s "
                           "of one person speaking.", code="audio_too_long")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, IndexError):
        raise sample_error("'audio_sample' is not audio this server can read; send WAV, MP3, OGG/Opus, FLAC, "
                          "AAC/M4A or WebM.", code="invalid_audio_format") from None
    with container:
        if not container.streams.audio:
            raise sample_error("'audio_sample' has no audio track.", code="invalid_audio_format")
        declared = container.duration / 1_000_000 if container.duration else None
        if declared is not None and declared > max_seconds + DECLARED_SLACK:
            raise too_long
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks, total, limit = [], 0, int(max_seconds * RATE)
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > limit + RATE // 10:  # beyond the limit by more than resampling's rounding
                    raise too_long
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except Refusal:
            raise
        except (av.error.FFmpegError, ValueError) as exc:
            raise sample_error("'audio_sample' is damaged or truncated: it stops decoding part way "
                              f"({type(exc).__name__}).", code="invalid_audio") from None
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    seconds = len(samples) / RATE
    if seconds == 0:
        raise sample_error("'audio_sample' holds no audio: the file is empty or truncated.", code="invalid_audio")
    if seconds > max_seconds + 0.1:
        raise too_long
    if declared is not None and declared - seconds > max(DECLARED_SLACK, 0.1 * declared):
        raise sample_error(f"'audio_sample' is truncated: it says {declared:.1f} s but only {seconds:.1f} s "
                          "could be read.", code="invalid_audio")
    if not np.all(np.isfinite(samples)):
        raise sample_error("'audio_sample' decodes to invalid samples.", code="invalid_audio")
    return samples


def _wav_is_cut(data: bytes) -> bool:
    """Whether a RIFF/WAV file's data chunk says it is longer than the bytes sent (FFmpeg reads what is there)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    offset = 12
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4:offset + 8], "little")
        if data[offset:offset + 4] == b"data":
            # 0 and 0xFFFFFFFF: a streamed WAV whose length was unknown when its header was written.
            return size not in (0, 0xFFFFFFFF) and offset + 8 + size > len(data)
        offset += 8 + size + (size & 1)
    return True  # no data chunk in reach: the header itself is cut


def _frame_db(samples: np.ndarray) -> np.ndarray:
    n = len(samples) // FRAME
    frames = samples[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-12)


def prepare(samples: np.ndarray, prompt_seconds: float) -> PreparedSample:
    """Trim the silence, check there is speech, normalise its loudness and cut it to `prompt_seconds`."""
    source_seconds = len(samples) / RATE
    db = _frame_db(samples)
    if not len(db) or db.max() < SILENCE_DB:
        raise sample_error("The recording is silent; record one person speaking for a few seconds.",
                          code="audio_silent")
    loud = db > max(SILENCE_DB, db.max() - DYNAMIC_DB)
    speech_seconds = loud.sum() * FRAME / RATE
    if speech_seconds < MIN_SPEECH_SECONDS:
        raise sample_error(f"The recording has {speech_seconds:.1f} s of speech; at least "
                          f"{MIN_SPEECH_SECONDS:g} s is needed (5 to 15 s clones best).", code="audio_too_short")
    where = np.flatnonzero(loud)
    start = max(0, where[0] * FRAME - int(KEEP_BEFORE * RATE))
    end = min(len(samples), (where[-1] + 1) * FRAME + int(KEEP_AFTER * RATE))
    speech = samples[start:end].astype(np.float64)
    voiced = np.concatenate([samples[i * FRAME:(i + 1) * FRAME] for i in where]).astype(np.float64)
    level = np.sqrt(np.mean(voiced ** 2))
    gain = 10 ** (TARGET_RMS_DB / 20) / max(level, 1e-9)
    peak = np.abs(speech).max()
    gain = min(gain, PEAK / peak) if peak > 0 else gain
    speech = speech * gain
    cut = _cut_at_pause(speech, int(prompt_seconds * RATE))
    pcm = np.clip(np.round(cut * 32767), -32768, 32767).astype(np.int16)
    return PreparedSample(pcm, float(speech_seconds), float(source_seconds))


def _cut_at_pause(speech: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` samples, ending in the quietest 20 ms of the last two seconds before it.

    (The package's `end_on_pause` then ends the prompt on a pause of its own length.)"""
    if len(speech) <= limit:
        return speech
    window = speech[max(0, limit - 2 * RATE):limit]
    db = _frame_db(window)
    if not len(db):
        return speech[:limit]
    quietest = int(np.argmin(db))
    return speech[: max(0, limit - 2 * RATE) + (quietest + 1) * FRAME]


def prepared_from_upload(data: bytes, prompt_seconds: float) -> PreparedSample:
    return prepare(decode(data), prompt_seconds)
