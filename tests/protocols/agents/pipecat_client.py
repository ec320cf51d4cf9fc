"""Pipecat's OpenAITTSService in a pipeline of its own, speaking one answer through the service.

    .venv-agents/bin/python pipecat_client.py BASE_URL TEXT OUT.pcm

Writes the 16-bit PCM the TTS service pushed down the pipeline to OUT.pcm and prints, as JSON,
each audio frame's arrival (seconds after the pipeline started), size and sample rate.
"""

import asyncio
import json
import sys
import time

from pipecat.frames.frames import EndFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService


class Collect(FrameProcessor):
    """The processor after the TTS service: keeps the audio frames it receives."""

    def __init__(self, start: float):
        super().__init__()
        self.start = start
        self.frames = []

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.frames.append((time.monotonic() - self.start, frame))
        await self.push_frame(frame, direction)


async def main(base: str, text: str, out: str) -> None:
    tts = OpenAITTSService(api_key="unused", base_url=f"{base}/v1",
                           settings=OpenAITTSService.Settings(voice="alloy", model="tts-1"))
    collect = Collect(time.monotonic())
    task = PipelineTask(Pipeline([tts, collect]), params=PipelineParams(audio_out_sample_rate=24000))
    await task.queue_frames([TTSSpeakFrame(text), EndFrame()])
    await PipelineRunner(handle_sigint=False).run(task)
    with open(out, "wb") as file:
        file.write(b"".join(frame.audio for _, frame in collect.frames))
    print(json.dumps([{"at": at, "bytes": len(frame.audio), "sample_rate": frame.sample_rate}
                      for at, frame in collect.frames]))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
