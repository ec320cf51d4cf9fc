"""Speech engines: Kyutai DSM through moshi, Pocket TTS through pocket-tts."""
