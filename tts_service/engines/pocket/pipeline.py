"""The decode pipeline: the rows' latents turned into audio by Mimi's decoder, in chunks.

The flow model makes one latent per row every step; when and where those latents are decoded is
a policy of its own, apart from the frame loop: a row's first frame at once, then chunks that grow
to `DECODE_CHUNK_FRAMES` (four frames cost half as much per frame as one) but never outrun the
audio already sent, every due row in one batch. A row alone on a CPU is decoded in a second thread
while the worker's flow model makes the next frames, as the package's own generator does; this
class owns that thread and the torch thread counts it needs, and hands each row's audio, and the
words its frames closed, to the step's outputs.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging

import numpy as np

from ...threads import set_own_threads
from ..base import output_for
from . import frames

logger = logging.getLogger(__name__)

# Most frames the Mimi decoder turns into audio at once for one request (320 ms).
DECODE_CHUNK_FRAMES = 4


def due(piece) -> bool:
    """Whether a piece's latents are decoded this step: first frame at once, then in growing chunks.

    The Mimi decoder costs half as much per frame when it decodes four at once, but a listener
    must never run out: a chunk is at most as long as the audio already sent.
    """
    return bool(piece.undecoded) and (
        piece.ended or len(piece.undecoded) >= min(DECODE_CHUNK_FRAMES, max(1, piece.decoded)))


class DecodePipeline:
    """Decodes the engine's active rows (`active`: entries with `job`, `piece` and `samples`).

    A piece carries `undecoded` (latents), `heard` (each latent's attention over its words),
    `decoded` (frames made audio), `decoding` (frames of it are in the decoder thread), `faded`,
    `mimi_state` and `words`; the engine's step calls `before_flow` and `after_flow` around the
    flow model."""

    def __init__(self, active: collections.deque, language: str, sample_rate: int, device: str = "cpu",
                 modules=None):
        self.active = active
        self.language = language
        self.sample_rate = sample_rate
        self.device = device
        # () -> (model, `frames.StreamingModules`), asked at each decode: nothing held once the model is unloaded.
        self.modules = modules
        self._decoder: concurrent.futures.ThreadPoolExecutor | None = None  # see `decoder_thread`
        self._decoding: concurrent.futures.Future | None = None  # the chunk the decoder thread is on
        self._own_threads: int | None = None  # the worker's torch threads for a batch (`threads_for`)

    # -- the step ----------------------------------------------------------------------------
    def before_flow(self, flowing: bool, outputs: dict) -> bool:
        """Before the flow model's step (`flowing`: it makes a frame this step): the decoder thread's
        finished chunk into `outputs`, and the next chunk handed to it; whether this step is pipelined."""
        pipelined = self.pipelined()
        self.threads_for(pipelined)
        if self._decoding is not None:
            # The decoder thread's last chunk: taken when done, waited for when more is due,
            # when there is no frame to make meanwhile, or when the rows are now a batch.
            if self._decoding.done() or not flowing or not pipelined or self._any_due():
                self.push_decoded(self._decoding.result(), outputs)
                self._decoding = None
        if pipelined and self._decoding is None:
            taken = self.take_due()
            if taken:
                self._decoding = self.decoder_thread().submit(self.decode_taken, taken)
        return pipelined

    def after_flow(self, pipelined: bool, outputs: dict) -> None:
        """After the flow model's step: a batch decodes here; so does a row's first frame, heard at
        once rather than a step later."""
        if not pipelined or self._decoding is None and self._first_frame_due():
            self.push_decoded(self.decode_taken(self.take_due()), outputs)

    def _first_frame_due(self) -> bool:
        return any(entry.piece is not None and entry.piece.undecoded and not entry.piece.decoded
                   for entry in self.active)

    def _any_due(self) -> bool:
        return any(entry.piece is not None and due(entry.piece) for entry in self.active)

    # -- threads -----------------------------------------------------------------------------
    def pipelined(self) -> bool:
        """Whether this step decodes the frames of earlier steps in a second thread while the flow
        model makes the next one, as the package's own generator does: for a row alone on a CPU.

        Alone, most of a step's operations are too small for two torch threads to share, so the
        two halves overlap better than they split: 1.15 to 1.2 times the audio per second on two
        cores (the first audio one step later). With more rows the batch uses the cores better
        and the two threads only queue for the GIL (4.0 against 4.7 audio s per s with two rows).
        """
        return len(self.active) == 1 and self.device == "cpu" and self.torch_threads() > 1

    def torch_threads(self) -> int:
        """This worker's torch threads when it runs a batch."""
        import torch

        return self._own_threads or torch.get_num_threads()

    def decoder_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread that decodes while the flow model steps: one torch thread of its own."""
        if self._decoder is None:
            self._decoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"tts-decoder-{self.language}")
            self._decoder.submit(set_own_threads, 1).result()
        return self._decoder

    def threads_for(self, pipelined: bool) -> None:
        """One torch thread for the flow model while the decoder thread has the other core (an
        operation's helper waiting for a busy core costs more than it gives); all of them for a batch."""
        import torch

        if self._own_threads is None:
            self._own_threads = torch.get_num_threads()
        want = 1 if pipelined else self._own_threads
        if torch.get_num_threads() != want:
            set_own_threads(want)

    def settle(self) -> None:
        """Wait for the decoder thread's chunk and keep it for the next step (before slots are freed)."""
        if self._decoding is not None:
            decoding, self._decoding = self._decoding, None
            try:
                result = decoding.result()
            except Exception as exc:  # its rows' audio is lost; the rows end at their next step
                logger.error("the Pocket TTS decoder thread failed (%s): %s", self.language, exc, exc_info=exc)
                result = []
            done = concurrent.futures.Future()
            done.set_result(result)
            self._decoding = done

    def close(self) -> None:
        """Give the decoder thread back (the engine is idle): no thread is kept for nothing."""
        if self._decoder is not None:
            self.settle()
            self._decoding = None
            self._decoder.shutdown(wait=False)
            self._decoder = None

    # -- decoding ----------------------------------------------------------------------------
    def take_due(self) -> list:
        """The frames due for decoding, grouped by how many each row has waiting, taken off the rows.

        Decoding every row when one is due keeps the rows in step, so that they share one batch
        (rows with the same number of frames waiting; a request's first frame goes first)."""
        import torch

        waiting = [entry for entry in self.active if entry.piece is not None and entry.piece.undecoded]
        if not any(due(entry.piece) for entry in waiting):
            return []
        by_count: dict[int, list] = collections.defaultdict(list)
        for entry in waiting:
            by_count[len(entry.piece.undecoded)].append(entry)
        taken = []
        for count in sorted(by_count):
            entries = by_count[count]
            pieces = [entry.piece for entry in entries]
            latents = torch.cat([torch.cat(piece.undecoded, 1) for piece in pieces], 0)
            heard = [piece.heard for piece in pieces]
            for piece in pieces:
                piece.undecoded, piece.heard = [], []
                piece.decoded += count
                piece.decoding = True
            taken.append((entries, pieces, latents, heard))
        return taken

    def decode_taken(self, taken: list) -> list:
        """Audio for what `take_due` took (in this thread or the decoder's); touches only Mimi's states."""
        import torch

        with torch.no_grad():
            return [(entries, self.decode_rows(pieces, latents), heard) for entries, pieces, latents, heard in taken]

    def decode_rows(self, pieces: list, latents) -> list[np.ndarray]:
        """PCM for each piece's frames ([rows, frames, dim]), decoded in one batch."""
        import torch

        model, streaming = self.modules()
        rows = frames.decode_rows(model, streaming, latents, [piece.mimi_state for piece in pieces])
        pcm = []
        for piece, row in zip(pieces, rows):
            if not piece.faded:
                # The package fades the first 5 ms of every chunk in: a fresh decoder state clicks.
                fade = torch.linspace(0, 1, self.sample_rate // 200)
                n = min(fade.numel(), row.shape[-1])
                row[..., :n] *= fade[:n].to(row)
                piece.faded = True
            pcm.append(row[0, 0].detach().cpu().numpy().astype(np.float32, copy=False))
        return pcm

    def push_decoded(self, decoded: list, outputs: dict) -> None:
        """Each row's audio, and the words its frames closed, into its output."""
        for entries, pcms, heard in decoded:
            for entry, pcm, attention in zip(entries, pcms, heard):
                if entry.piece is not None:
                    entry.piece.decoding = False
                if entry not in self.active:
                    continue  # it left while its frames were decoded
                output = output_for(outputs, entry.job)
                output.audio = np.clip(pcm, -1.0, 1.0)
                entry.samples += len(pcm)
                if entry.piece.words is not None:
                    output.words += self._words_heard(entry, pcm, attention)

    @staticmethod
    def _words_heard(entry, pcm: np.ndarray, attention: list) -> list:
        """The words these frames closed (`alignment`); all the rest once the piece has ended."""
        words = entry.piece.words
        closed = []
        for frame, heard in zip(np.array_split(pcm, len(attention)), attention):
            closed += words.hear(heard.float().cpu().numpy(), frame)
        return closed
