"""Word times on Pocket TTS, read from the flow model's own attention while it speaks.

A few attention heads of the flow model follow the text as the audio is generated: per 80 ms frame,
the attention of those heads (from the frame's query, over the text's keys in the KV cache) says
which word is being spoken. The batched step (`frames.flow_step`) hands each row's
attention over its text tokens here, summed over the chosen heads; each token's share goes to
the words its characters belong to, and a word opens when the attention moves on to it while the
frame is voiced, and closes when the next word takes over or when a silent frame finds the
attention already past it. Words the audio ended before reaching share the last one's time.

The rules (the next word only, a frame's silence closing a word, the 0.001 floor under which a
later word may take over) and the heads follow `pocket-tts-timestamped`, a fork of pocket-tts,
release 1.4.0: `pocket_tts_timestamped/timestamps/alignment.py` and the `timestamp_heads` of its
`config/<name>.yaml`. The heads are carried here only for checkpoints whose weights path and
revision in the fork's config are exactly those of pocket-tts 4.0.1's config of the same name
(`english.yaml` points at other weights there, so English keeps the estimate).
`TTS_POCKET_WORD_HEADS` names heads for any other model, or turns the times off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...config import parse_heads
from ...text.markdown import has_speech

import numpy as np

# Layer:head pairs of the flow model, by the weights they were chosen on (hf://kyutai/...,
# path@revision as the configs name them). Source: pocket-tts-timestamped 1.4.0, the file named.
RELEASED_HEADS: dict[str, str] = {
    "pocket-tts/languages/dutch/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "4:5 3:9 3:14 2:0",  # dutch.yaml
    "pocket-tts-without-voice-cloning/languages/dutch/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "4:5 3:9 3:14 2:0",  # dutch.yaml
    "pocket-tts/languages/dutch_24l/model.safetensors@2dd944b099d06bb9edbd221fef138685711d9bf0": "17:13 17:11",  # dutch_24l.yaml
    "pocket-tts-without-voice-cloning/languages/dutch_24l/model.safetensors@4e1e0a3e611c51c0b4ed8174fc10f32a54644303": "17:13 17:11",  # dutch_24l.yaml
    "pocket-tts/languages/english_2026-01/model.safetensors@39592ff23c9ef80098bb74895d104c26275fe2c9": "3:8 2:0",  # english_2026-01.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-01/model.safetensors@d29db7978e464fb90cb3359ee0c69a273b9142cc": "3:8 2:0",  # english_2026-01.yaml
    "pocket-tts/languages/english_2026-04/model.safetensors@19f95fe2df36e79fbd9f10008595cc4c977a0fcc": "3:8 2:0",  # english_2026-04.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-04/model.safetensors@d29db7978e464fb90cb3359ee0c69a273b9142cc": "3:8 2:0",  # english_2026-04.yaml
    "pocket-tts/languages/english_2026-04_24l/model.safetensors@492522650173a0653b7575cdc25ae09810e5d741": "14:10 17:11 15:4",  # english_2026-04_24l.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-04_24l/model.safetensors@e81d79e8194ad4c7ce879c87a4258ef20cbf2487": "14:10 17:11 15:4",  # english_2026-04_24l.yaml
    "pocket-tts/languages/english_2026-09/model.safetensors@983151f13aaeab1b13c1e5e3c2c383d49a9edf3f": "3:8 2:0",  # english_2026-09.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-09/model.safetensors@e7205b6ee50e654a5ea19f0e9df2b0813b05e921": "3:8 2:0",  # english_2026-09.yaml
    "pocket-tts/languages/english_2026-09_2/model.safetensors@7f364c05d1be3faf2b234cdbe4cbb68a026d4218": "3:8 2:0",  # english_2026-09_2.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-09_2/model.safetensors@575d14372df89a4534bcb989870a34e77544b09f": "3:8 2:0",  # english_2026-09_2.yaml
    "pocket-tts/languages/english_2026-09_24l/model.safetensors@983151f13aaeab1b13c1e5e3c2c383d49a9edf3f": "14:10 17:11 15:4",  # english_2026-09_24l.yaml
    "pocket-tts-without-voice-cloning/languages/english_2026-09_24l/model.safetensors@e7205b6ee50e654a5ea19f0e9df2b0813b05e921": "14:10 17:11 15:4",  # english_2026-09_24l.yaml
    "pocket-tts/languages/english_drifting_26-09/model.safetensors@75cfe24e3142233bb81887fed3482e9652bb4a6e": "2:15",  # english_drifting_26-09.yaml
    "pocket-tts-without-voice-cloning/languages/english_drifting_26-09/model.safetensors@a5ce31f3eba7a3b0cb9c24ba2015b098f278eaae": "2:15",  # english_drifting_26-09.yaml
    "pocket-tts/languages/french/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "3:9",  # french.yaml
    "pocket-tts-without-voice-cloning/languages/french/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "3:9",  # french.yaml
    "pocket-tts/languages/french_24l/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "17:13 16:9 18:5 17:11",  # french_24l.yaml
    "pocket-tts-without-voice-cloning/languages/french_24l/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "17:13 16:9 18:5 17:11",  # french_24l.yaml
    "pocket-tts/languages/german/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "3:14 3:9 3:10",  # german.yaml
    "pocket-tts-without-voice-cloning/languages/german/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "3:14 3:9 3:10",  # german.yaml
    "pocket-tts/languages/german_24l/model.safetensors@2dd944b099d06bb9edbd221fef138685711d9bf0": "17:11 15:4",  # german_24l.yaml
    "pocket-tts-without-voice-cloning/languages/german_24l/model.safetensors@4e1e0a3e611c51c0b4ed8174fc10f32a54644303": "17:11 15:4",  # german_24l.yaml
    "pocket-tts/languages/italian/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "3:9 4:5 3:10",  # italian.yaml
    "pocket-tts-without-voice-cloning/languages/italian/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "3:9 4:5 3:10",  # italian.yaml
    "pocket-tts/languages/italian_24l/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "17:13 13:10 18:5 14:10",  # italian_24l.yaml
    "pocket-tts-without-voice-cloning/languages/italian_24l/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "17:13 13:10 18:5 14:10",  # italian_24l.yaml
    "pocket-tts/languages/portuguese/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "3:9 4:2 4:5 3:14 3:4",  # portuguese.yaml
    "pocket-tts-without-voice-cloning/languages/portuguese/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "3:9 4:2 4:5 3:14 3:4",  # portuguese.yaml
    "pocket-tts/languages/portuguese_24l/model.safetensors@2dd944b099d06bb9edbd221fef138685711d9bf0": "17:13 18:1 20:12",  # portuguese_24l.yaml
    "pocket-tts-without-voice-cloning/languages/portuguese_24l/model.safetensors@4e1e0a3e611c51c0b4ed8174fc10f32a54644303": "17:13 18:1 20:12",  # portuguese_24l.yaml
    "pocket-tts/languages/spanish/model.safetensors@3e82814a68665eec246ff649b14c71331f955c06": "3:9 4:2 4:5 3:10",  # spanish.yaml
    "pocket-tts-without-voice-cloning/languages/spanish/model.safetensors@1e08e6a23401048648a9fdcfde2f89348215c2a7": "3:9 4:2 4:5 3:10",  # spanish.yaml
    "pocket-tts/languages/spanish_24l/model.safetensors@2dd944b099d06bb9edbd221fef138685711d9bf0": "17:13 17:11 18:1",  # spanish_24l.yaml
    "pocket-tts-without-voice-cloning/languages/spanish_24l/model.safetensors@4e1e0a3e611c51c0b4ed8174fc10f32a54644303": "17:13 17:11 18:1",  # spanish_24l.yaml
}

# A frame whose RMS is under this is silent (the fork's threshold).
SILENCE_RMS = 1e-3
# A word whose attention fell under this may be taken over by any later word, not only the next.
FADED = 1e-3

_UNIT = re.compile(r"[^\W_](?:[\w'’\-.,:/]*[^\W_])?|[^\w\s]+|_+")


def released_heads(weights_path: str | None) -> tuple[tuple[int, int], ...]:
    """The heads listed for exactly these weights (path and revision), or none."""
    if not weights_path or not weights_path.startswith("hf://kyutai/"):
        return ()
    return parse_heads(RELEASED_HEADS.get(weights_path[len("hf://kyutai/"):], ""))


def check_heads(heads, layers: int, heads_per_layer: int) -> None:
    for layer, head in heads:
        if layer >= layers or head >= heads_per_layer:
            raise ValueError(f"TTS_POCKET_WORD_HEADS: the model has no head {layer}:{head} "
                             f"({layers} layers of {heads_per_layer} heads)")


@dataclass
class Units:
    """A prompt's words and marks, and each token's share of them ([tokens, units])."""

    words: list  # per unit: the word it is, or None for a mark
    shares: np.ndarray

    @property
    def count(self) -> int:
        return sum(word is not None for word in self.words)


def prompt_units(prompt: str, prefixes: list[str]) -> Units:
    """Units of `prompt` and each token's share of them, from the text of each token prefix.

    `prefixes[i]` is the tokenizer's text for the first i + 1 tokens: token i covers the
    non-space characters between the previous prefix's count and its own. A tokenizer that
    normalises characters is scaled back to the prompt's own count.
    """
    owner, words = [], []
    for match in _UNIT.finditer(prompt):
        piece = match.group()
        words.append(piece if piece[0].isalnum() else None)
        owner += [len(words) - 1] * sum(not ch.isspace() for ch in piece)
    shares = np.zeros((len(prefixes), max(len(words), 1)), dtype=np.float32)
    counts = [sum(not ch.isspace() for ch in text) for text in prefixes]
    total = counts[-1] if counts else 0
    scale = len(owner) / total if total else 0.0
    before = 0
    for token, count in enumerate(counts):
        first, last = int(round(before * scale)), int(round(count * scale))
        for char in range(first, min(last, len(owner))):
            shares[token, owner[char]] += 1.0 / (last - first)
        before = max(before, count)
    return Units(words, shares)


def name_words(pieces: list[Units], text: str) -> None:
    """Show the request's own words (as written, marks attached) where they match one for one."""
    written = [word for word in text.split() if has_speech(word)]
    if sum(units.count for units in pieces) != len(written):
        return
    names = iter(written)
    for units in pieces:
        units.words = [None if word is None else next(names) for word in units.words]


@dataclass
class PieceWords:
    """One piece's words, opened and closed frame by frame; times in seconds from the job's start."""

    units: Units
    offset: float
    frame_seconds: float
    frame: int = 0
    _next: int = 0
    _open: int | None = None
    _start: float = 0.0
    _closed_at: float = 0.0
    _finished: bool = False
    _word_units: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._word_units = [index for index, word in enumerate(self.units.words) if word is not None]
        self._closed_at = self.offset

    def hear(self, attention: np.ndarray, pcm: np.ndarray) -> list[tuple[str, float, float]]:
        """One frame: its attention over the prompt's tokens and its audio; the words it closed."""
        scores = attention @ self.units.shares
        at = self.offset + self.frame * self.frame_seconds
        self.frame += 1
        voiced = pcm.size and float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) > SILENCE_RMS
        closed = []
        if not voiced:
            if self._open is not None and self._past(scores):
                closed.append(self._close(at))
        elif self._open is None:
            if self._next < len(self._word_units):
                self._open_next(at)
        elif self._next < len(self._word_units) and self._taken_over(scores):
            closed.append(self._close(at))
            self._open_next(at)
        return closed

    @property
    def finished(self) -> bool:
        return self._finished

    def finish(self, end: float) -> list[tuple[str, float, float]]:
        """The audio ended: the open word closes; words never reached share the last stretch."""
        closed, start = [], self._closed_at
        if self._open is not None:
            start = self._start
            self._next -= 1
            self._open = None
        left = [self.units.words[unit] for unit in self._word_units[self._next:]]
        self._next = len(self._word_units)
        self._finished = True
        weights = [len(word) + 1 for word in left]
        for word, weight in zip(left, weights):
            stop = start + (end - start) * weight / sum(weights)
            closed.append((word, start, stop))
            start = stop
        return closed

    def _open_next(self, at: float) -> None:
        self._open, self._start = self._next, at
        self._next += 1

    def _close(self, at: float) -> tuple[str, float, float]:
        word = self.units.words[self._word_units[self._open]]
        self._open, self._closed_at = None, at
        return word, self._start, at

    def _taken_over(self, scores: np.ndarray) -> bool:
        """The next word draws more attention, or this one has faded and any later word draws more."""
        current = scores[self._word_units[self._open]]
        if scores[self._word_units[self._next]] > current:
            return True
        return current < FADED and any(scores[unit] > current for unit in self._word_units[self._next + 1:])

    def _past(self, scores: np.ndarray) -> bool:
        """In silence: the attention is already past the open word, or it was the last word to say."""
        unit = self._word_units[self._open]
        if unit + 1 < len(scores) and scores[unit + 1:].max() > scores[unit]:
            return True
        last = self._open == len(self._word_units) - 1
        return last and all(word is not None for word in self.units.words[unit + 1:])


@dataclass
class TextAttention:
    """What `frames.flow_step` reads for one step: the heads per layer, each row's text.

    `spans[i]` is row i's text positions in its KV cache (start, end), or None; after the step,
    `sums[i]` holds row i's attention over those positions from its last query (its frame),
    summed over the heads and divided by their number.
    """

    heads: tuple
    spans: list
    sums: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sums = [None] * len(self.spans)
        self._by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            self._by_layer.setdefault(layer, []).append(head)

    def rows_listener(self, layer: int, rows: list[int]):
        """`listener` for rows that attend together (`RowCaches.attend`): one masked softmax for
        all of them, each over its own text positions, rather than a few operations per row."""
        import torch

        heads = self._by_layer.get(layer)
        chosen = [(place, row) for place, row in enumerate(rows) if self.spans[row] is not None]
        if not heads or not chosen:
            return None
        share = 1.0 / len(self.heads)
        places = torch.tensor([place for place, _ in chosen], dtype=torch.long)
        starts = torch.tensor([self.spans[row][0] for _, row in chosen], dtype=torch.long)
        ends = torch.tensor([self.spans[row][1] for _, row in chosen], dtype=torch.long)
        reach = int(ends.max())

        def listen(q, keys, slots) -> None:
            query = q[places][:, heads, -1]  # [rows, heads, dim]
            near = keys[:, heads, :reach][slots[places]]  # [rows, heads, text positions, dim]
            logits = (near @ query.unsqueeze(-1)).squeeze(-1).float() * query.shape[-1] ** -0.5
            positions = torch.arange(reach, dtype=torch.long)
            inside = (positions >= starts[:, None]) & (positions < ends[:, None])
            heard = logits.masked_fill(~inside[:, None, :], float("-inf")).softmax(-1).sum(1) * share
            for place, (_, row) in enumerate(chosen):
                start, end = self.spans[row]
                part = heard[place, start:end]
                self.sums[row] = part if self.sums[row] is None else self.sums[row] + part

        return listen

    def listener(self, layer: int, row: int):
        """A function of the layer's rotated queries and keys ([1, heads, positions, dim]), or None."""
        heads, span = self._by_layer.get(layer), self.spans[row]
        if not heads or span is None:
            return None
        start, end = span
        share = 1.0 / len(self.heads)

        def listen(q, k) -> None:
            query = q[0, heads, -1]
            keys = k[0, heads, start:end]
            logits = (keys @ query.unsqueeze(-1)).squeeze(-1).float() * query.shape[-1] ** -0.5
            heard = logits.softmax(-1).sum(0) * share
            self.sums[row] = heard if self.sums[row] is None else self.sums[row] + heard

        return listen
