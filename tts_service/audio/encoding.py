"""Whole answers encoded with libsndfile (through soundfile) and FFmpeg (through PyAV), any rate a
client asks for through FFmpeg's resampler; the pieces of a streamed WAV. Streams: audio_stream.py."""

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
    "aac": ("ADTS", "AAC", "audio/aac"),  # libsndfile has no AAC: written with PyAV (FFmpeg)
    # G.711 for telephone lines, raw (no header), as Twilio's and other phone APIs take it.
    "ulaw": ("RAW", "ULAW", "audio/PCMU"),
    "alaw": ("RAW", "ALAW", "audio/PCMA"),
}
# The rates a client may ask for; the models speak at 24 kHz.
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# Opus encodes only at these rates; another asked-for rate is encoded at 48 kHz (players resample).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# Formats that carry no rate of their own: the MIME type says it.
RAW_FORMATS = ("pcm", "ulaw", "alaw")


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to 16-bit little-endian PCM."""
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def output_rate(fmt: str, asked: int) -> int:
    """The rate `fmt` is encoded at when `asked` is wanted (Opus has rates of its own)."""
    if fmt == "opus" and asked not in OPUS_RATES:
        return 48000
    return asked


def encode(audio: np.ndarray, sample_rate: int, fmt: str = "wav", out_rate: int | None = None) -> tuple[bytes, int]:
    """Mono float audio at `sample_rate` encoded into `fmt` (a key of FORMATS) at `out_rate`
    (default: as it is); returns the bytes and the rate they are at."""
    rate = output_rate(fmt, out_rate or sample_rate)
    if rate != sample_rate:
        audio = resample(audio, sample_rate, rate)
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if fmt == "pcm":
        return to_pcm16(data), rate
    if fmt == "aac":
        return _encode_aac(data, rate), rate
    container, subtype, _ = FORMATS[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=container, subtype=subtype)
    return buffer.getvalue(), rate


def mime_type(fmt: str, sample_rate: int | None = None) -> str:
    mime = FORMATS[fmt][2]
    if fmt in RAW_FORMATS and sample_rate:
        return f"{mime};rate={sample_rate};channels=1"
    return mime


class Resampler:
    """FFmpeg's resampler (swresample, through PyAV) from one rate to another, for a stream: its
    filter state is kept from chunk to chunk, so chunk boundaries leave no clicks."""

    def __init__(self, in_rate: int, out_rate: int):
        import av

        self.in_rate, self.out_rate = in_rate, out_rate
        self._av = av
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
        self._pts = 0

    def __call__(self, pcm: np.ndarray | None) -> np.ndarray:
        """The resampled audio so far; None flushes what the filter still holds."""
        if pcm is None:
            frames = self._resampler.resample(None)
        else:
            frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.float32)[None, :],
                                                     format="flt", layout="mono")
            frame.sample_rate = self.in_rate
            frame.pts = self._pts
            self._pts += len(pcm)
            frames = self._resampler.resample(frame)
        parts = [f.to_ndarray()[0] for f in frames]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """A whole clip at another rate."""
    if in_rate == out_rate or len(audio) == 0:
        return np.asarray(audio, dtype=np.float32)
    resampler = Resampler(in_rate, out_rate)
    return np.concatenate([resampler(audio), resampler(None)])


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header for a stream whose length is not known yet.

    The RIFF and data sizes are set to 0xFFFFFFFF, which players such as ffplay, browsers and
    soundfile read as "until the end of the stream"."""
    byte_rate = sample_rate * channels * 2
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
            + b"data" + struct.pack("<I", unknown))


def _encode_aac(audio: np.ndarray, sample_rate: int) -> bytes:
    """AAC in ADTS frames (what OpenAI's `aac` format is), through PyAV's bundled FFmpeg."""
    import av

    buffer = io.BytesIO()
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)[None, :]
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(data, format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def change_speed(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Faster or slower speech at the same pitch, with FFmpeg's atempo filter (through PyAV)."""
    import av

    if speed == 1.0 or audio.size == 0:
        return audio
    graph = av.filter.Graph()
    node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono")
    source = node
    remaining = speed
    # atempo takes 0.5 to 2.0 per stage; chain stages for the rest of OpenAI's 0.25-4.0 range.
    while remaining > 2.0 or remaining < 0.5:
        step = 2.0 if remaining > 2.0 else 0.5
        stage = graph.add("atempo", str(step))
        node.link_to(stage)
        node, remaining = stage, remaining / step
    stage = graph.add("atempo", f"{remaining:.6f}")
    node.link_to(stage)
    sink = graph.add("abuffersink")
    stage.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.asarray(audio, dtype=np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    source.push(frame)
    source.push(None)
    out = []
    while True:
        try:
            out.append(sink.pull().to_ndarray()[0])
        except (av.error.BlockingIOError, av.error.EOFError, EOFError):
            break
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)
