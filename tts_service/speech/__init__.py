"""The speech core: one request, one resolver for language and voice, one refusal type, and
sessions that turn text into tagged events. Every protocol is an adapter over it.

The package imports nothing itself, so that `text/` and `voices/` can use its refusals without
loading the session."""
