"""Streamed encoding: chunks that join into one valid stream of every format, at any asked rate,
through a resampler that filters rather than aliases."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import decode_audio, rms
from tts_service.audio import encoding as audio
from tts_service.audio.stream import STREAM_FORMATS, StreamEncoder, check_output
from tts_service.speech.refusals import Refusal

RATE = 24000


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def streamed(fmt: str, pcm: np.ndarray, out_rate: int | None = None) -> tuple[bytes, list[int], StreamEncoder]:
    encoder = StreamEncoder(fmt, RATE, out_rate)
    sizes = []
    data = [encoder.header()]
    for start in range(0, len(pcm), 1920):  # 80 ms, as the engines make it
        data.append(encoder.encode(pcm[start:start + 1920]))
        sizes.append(len(data[-1]))
    data.append(encoder.finish())
    return b"".join(data), sizes, encoder


@pytest.mark.parametrize("out_rate", [None, 8000, 44100])
@pytest.mark.parametrize("fmt", STREAM_FORMATS)
def test_chunks_join_into_one_stream_of_the_right_length(fmt, out_rate):
    data, sizes, encoder = streamed(fmt, tone(440, 2.0), out_rate)
    samples, rate = decode_audio(data, fmt, encoder.sample_rate)
    assert rate == (48000 if fmt == "opus" else out_rate or RATE)
    assert abs(len(samples) / rate - 2.0) < 0.2  # encoders pad to whole frames
    assert rms(samples) > 0.1
    # Bytes come out while the audio goes in, not only at the end.
    assert sum(1 for size in sizes if size) > len(sizes) / 2, sizes


def test_a_stream_resampled_in_chunks_equals_the_whole_clip_resampled():
    pcm = tone(440) + tone(2500, amplitude=0.1)
    data, _, _ = streamed("pcm", pcm, 16000)
    whole, rate = audio.encode(pcm, RATE, "pcm", 16000)
    assert rate == 16000 and data == whole


def test_the_resampler_filters_what_the_new_rate_cannot_hold():
    # 10 kHz cannot exist at 8 kHz: decimating would fold it to 2 kHz; a resampler removes it.
    high = audio.resample(tone(10000), RATE, 8000)
    kept = audio.resample(tone(1000), RATE, 8000)
    assert len(high) == len(kept) == 8000
    assert rms(high) < 0.01 * rms(kept)
    assert rms(kept) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("fmt", ["ulaw", "alaw"])
def test_g711_round_trips_within_its_step(fmt):
    pcm = tone(440)
    data, rate = audio.encode(pcm, RATE, fmt, 8000)
    assert rate == 8000 and len(data) == 8000  # one byte a sample
    back, _ = decode_audio(data, fmt, 8000)
    assert np.max(np.abs(back - audio.resample(pcm, RATE, 8000))) < 0.02


def test_opus_keeps_to_its_own_rates():
    assert StreamEncoder("opus", RATE, 44100).sample_rate == 48000
    assert StreamEncoder("opus", RATE, 16000).sample_rate == 16000


@pytest.mark.parametrize("fmt, rate, field", [("midi", None, "format"), ("wav", 12345, "sample_rate"),
                                             ("wav", "fast", "sample_rate"), ("wav", True, "sample_rate"),
                                             ("wav", 8000.5, "sample_rate")])
def test_a_bad_format_or_rate_is_a_bad_request_naming_the_field(fmt, rate, field):
    with pytest.raises(Refusal) as caught:
        check_output(fmt, rate, STREAM_FORMATS)
    assert caught.value.kind == "bad_request" and caught.value.details["param"] == field


def test_a_rate_may_come_as_a_query_string():
    assert check_output("ulaw", "8000", STREAM_FORMATS) == ("ulaw", 8000)
    assert check_output("wav", None, STREAM_FORMATS) == ("wav", None)
