"""Audio on its way to a client: whole-file encodings and rates, streamed containers, subtitles
from word times, and the cache of finished answers."""
