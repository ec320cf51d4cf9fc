"""Voices made from a client's recording: the recording's checks and preparation, and the library
that encodes them once and keeps them on disk for every replica."""
