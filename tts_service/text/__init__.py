"""Text on its way to an engine: Markdown and HTML to plain speech, sentences, `<break>` pauses,
and the checks every door applies to what a client sends."""
