"""LiveKit Agents' openai.TTS speaking one answer through the service.

    .venv-agents/bin/python livekit_client.py BASE_URL MODEL TEXT OUT.pcm

`tts-1` makes the plugin ask for mp3 bytes, `gpt-4o-mini-tts` for server-sent events. Writes the
16-bit PCM of the frames the plugin decoded to OUT.pcm and prints, as JSON, each frame's arrival
(seconds after the request), size and sample rate.
"""

import asyncio
import json
import sys
import time

from livekit.plugins import openai


async def main(base: str, model: str, text: str, out: str) -> None:
    tts = openai.TTS(model=model, voice="alloy", base_url=f"{base}/v1", api_key="unused")
    frames = []
    start = time.monotonic()
    try:
        async with tts.synthesize(text) as stream:
            async for audio in stream:
                frames.append((time.monotonic() - start, audio.frame))
    finally:
        await tts.aclose()
    with open(out, "wb") as file:
        file.write(b"".join(bytes(frame.data) for _, frame in frames))
    print(json.dumps([{"at": at, "bytes": len(bytes(frame.data)), "sample_rate": frame.sample_rate}
                      for at, frame in frames]))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
