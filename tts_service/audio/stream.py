"""Audio encoded while it is made: every format a client can ask for, at the rate it asks for.

A `StreamEncoder` takes float PCM chunks at the model's rate and returns, for each, the bytes that
continue the answer: concatenated, they are one valid file or stream of the format (an open-ended
WAV, raw PCM or G.711, an MP3 or ADTS AAC elementary stream, Ogg Opus pages, FLAC frames). The
compressed formats go through FFmpeg's own muxers and encoders (PyAV) writing into a buffer that is
drained after every chunk, so that a player starts while the rest is still being generated, as
OpenAI's speech API streams every format. A rate other than the model's goes through one
`audio.Resampler` for the whole answer.
"""

from __future__ import annotations

import numpy as np

from . import encoding as audio
from ..speech.refusals import BAD_REQUEST, Refusal

STREAM_FORMATS = ("wav", "pcm", "ulaw", "alaw", "mp3", "opus", "aac", "flac")
# FFmpeg's (muxer, encoder, bit rate) per compressed format: speech needs little.
_CONTAINERS = {"mp3": ("mp3", "libmp3lame", 64000), "opus": ("ogg", "libopus", 32000),
               "aac": ("adts", "aac", 64000), "flac": ("flac", "flac", None)}


def check_output(fmt, sample_rate, formats: tuple[str, ...], *, format_field: str = "format",
                 rate_field: str = "sample_rate") -> tuple[str, int | None]:
    """A client's format and rate, checked: (format, rate or None for the model's own)."""
    if fmt not in formats:
        raise Refusal(BAD_REQUEST, f"'{format_field}' must be one of {', '.join(formats)}.", param=format_field)
    if sample_rate is None:
        return fmt, None
    if isinstance(sample_rate, str) and sample_rate.isdigit():
        sample_rate = int(sample_rate)
    if isinstance(sample_rate, bool) or sample_rate not in audio.SAMPLE_RATES:
        raise Refusal(BAD_REQUEST, f"'{rate_field}' must be one of "
                                   f"{', '.join(map(str, audio.SAMPLE_RATES))}.", param=rate_field)
    return fmt, int(sample_rate)


class _Sink:
    """A write-only file for FFmpeg's muxer: what it writes is kept until drained."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class StreamEncoder:
    """One answer's encoder: `header()`, then `encode(chunk)` per chunk, then `finish()`.

    Each call returns the bytes that continue the stream (none while an encoder fills a frame).
    `sample_rate` is the rate of the encoded audio; `close()` frees an unfinished one."""

    def __init__(self, fmt: str, in_rate: int, out_rate: int | None = None, *, page_ms: int = 100):
        if fmt not in STREAM_FORMATS:
            raise ValueError(f"no streaming encoder for {fmt!r}")
        self.fmt = fmt
        self.sample_rate = audio.output_rate(fmt, out_rate or in_rate)
        self._resample = audio.Resampler(in_rate, self.sample_rate) if self.sample_rate != in_rate else None
        self._container = self._stream = None
        self._sink = _Sink()
        self._pts = 0
        self._finished = False
        if fmt in _CONTAINERS:
            import av

            muxer, codec, bit_rate = _CONTAINERS[fmt]
            # An Ogg page every `page_ms` (100 ms) rather than FFmpeg's default second, so Opus streams
            # too; Kyutai's protocol wants each 80 ms frame out at once (20 ms pages).
            options = {"page_duration": str(page_ms * 1000)} if muxer == "ogg" else {}
            self._container = av.open(self._sink, "w", format=muxer, options=options)
            self._stream = self._container.add_stream(codec, rate=self.sample_rate, layout="mono")
            if bit_rate:
                self._stream.bit_rate = bit_rate

    @property
    def mime_type(self) -> str:
        return audio.mime_type(self.fmt, self.sample_rate)

    def header(self) -> bytes:
        """What goes before the first audio: a WAV header, Ogg's identification and comment pages;
        the other formats start with audio."""
        if self.fmt == "wav":
            return audio.streaming_wav_header(self.sample_rate)
        if self._container is not None and self._container.format.name == "ogg":
            self._container.start_encoding()
            return self._sink.drain()
        return b""

    def encode(self, pcm: np.ndarray) -> bytes:
        """The bytes that continue the stream with `pcm` (float samples at the model's rate)."""
        if self._resample is not None:
            pcm = self._resample(pcm)
        return self._encode(np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0))

    def finish(self) -> bytes:
        """The rest: what the resampler and the encoder still hold, and the container's end."""
        if self._finished:
            return b""
        tail = self._resample(None) if self._resample is not None else np.zeros(0, dtype=np.float32)
        out = self._encode(np.clip(tail, -1.0, 1.0))
        self._finished = True
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            out += self._sink.drain()
        return out

    def close(self) -> None:
        """Free an unfinished encoder (the client left)."""
        if self._container is not None and not self._finished:
            self._finished = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a half-written stream nobody will read
                pass

    def _encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) == 0:
            return b""
        if self._container is None:  # wav, pcm, ulaw, alaw: sample by sample, no state
            data, _ = audio.encode(pcm, self.sample_rate, "pcm" if self.fmt == "wav" else self.fmt)
            return data
        import av

        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += len(pcm)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.drain()
