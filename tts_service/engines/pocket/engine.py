"""Kyutai Pocket TTS through the pocket-tts package: Spanish, German, Italian, Portuguese, and more.

One model per language, loaded with the package's own `TTSModel.load_model` (its language config,
or a configured YAML). The package generates one request at a time, a whole sentence per call,
in its own generation and decoding threads. Here the worker drives the package's modules itself,
one frame (80 ms of audio) per step for every active request: a new request's prompt and first
frame run in the step it is admitted and that frame is decoded at once, and cancellation and
deadlines are checked every frame. The active requests are the rows of one batch that requests
join (their text prompted into their own copy of the voice state) and leave at their own end:
the flow model's linear layers run once per step for all rows, while each row attends over its
own KV cache at its own positions, so that rows of different lengths need no padding and a row's
audio does not depend on the others beyond rounding. The Mimi decoder decodes the rows' frames
in batches too, up to four frames per row at once (`pipeline`: when, and in which thread). The loop follows the package's own
`_generate` / `_autoregressive_generation` / `_decode_audio_worker` and `FlowLMModel.forward` /
`StreamingMultiheadAttention.forward` (pocket_tts 4.0.1), so that a request alone gets the audio
`generate_audio` gives up to rounding. Everything it reaches beyond the package's public API goes
through `pocket_internals`, which lists each name and checks the list when a model loads: a
missing name the package's own per-sentence generator needs too stops the load; one only the
frame loop needs, or a release other than the one verified, makes the engine fall back to that
per-sentence generator.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ...config import Settings
from ...heap import return_freed_memory
from ..hub import ModelDownloadError, download
from ...text.markdown import has_speech, split_sentences
from . import alignment, frames, internals, pipeline
from ..base import (Capabilities, Engine, NothingToSayError, SlotOutput, SynthesisRequest, UnknownVoiceError,
                   is_speaker_embedding, output_for)

logger = logging.getLogger(__name__)

PACKAGE_LANGUAGES = {"en": "english", "fr": "french", "de": "german", "it": "italian",
                     "pt": "portuguese", "es": "spanish", "nl": "dutch"}
VOICE_FILES = (".wav", ".mp3", ".flac", ".ogg")
STATE_FILES = (".safetensors",)


@dataclass
class PocketPiece:
    """One chunk as the package will speak it: its own text rules applied, tokens counted."""

    text: str
    frames_after_eos: int
    tokens: list[int]
    units: alignment.Units | None = None  # its words, where their times are read from attention


@dataclass
class PocketPrepared:
    sentences: list[PocketPiece]
    voice_name: str
    voice_source: str | Path


@dataclass
class _Piece:
    """One chunk being generated: its flow-LM and Mimi states, as the package keeps them."""

    flow_state: dict
    mimi_state: dict
    latent: object  # the last latent, fed back in; NaN (the package's BOS) at the start
    max_frames: int
    frames_after_eos: int
    frame: int = 0
    eos_frame: int | None = None
    faded: bool = False
    prompt: object = None  # the text's tokens until they are run through the model (its first step)
    undecoded: list = field(default_factory=list)  # latents generated, not yet turned into audio
    decoded: int = 0  # frames turned into audio
    decoding: bool = False  # frames of it are in the decoder thread
    ended: bool = False  # no more frames: what is left undecoded is decoded at once
    text_at: int = 0  # where its tokens sit in the KV cache
    words: alignment.PieceWords | None = None  # its words' times, where the model's heads are known
    attention: object = None  # the last step's attention over its tokens
    heard: list = field(default_factory=list)  # the attention of each undecoded latent


@dataclass(eq=False)  # found in the active list by identity: its fields hold tensors
class _Active:
    job: object
    sentences: collections.deque = field(default_factory=collections.deque)
    samples: int = 0
    piece: _Piece | None = None


class PocketEngine(Engine):
    provider = "Kyutai Pocket TTS"
    kind = "pocket"
    aliases = ("pocket-tts",)
    steps_per_cycle = pipeline.DECODE_CHUNK_FRAMES
    capabilities = Capabilities(voice_cloning=True)

    def __init__(self, settings: Settings, language: str):
        super().__init__()
        self.settings = settings
        self.language = language
        self.package_language = PACKAGE_LANGUAGES.get(language)
        if self.package_language is None and not self._config:
            raise ValueError(f"Pocket TTS has no model for {language!r}; "
                             f"it speaks {', '.join(sorted(PACKAGE_LANGUAGES))}")
        self._model = None
        self._frame_loop = False
        self._streaming: frames.StreamingModules | None = None  # listed at load, for the frame loop
        self._voice_states: dict[str, object] = {}
        self._broken_voices: set[str] = set()
        self._active: collections.deque[_Active] = collections.deque()
        # Decodes the rows' frames, beside the flow model for a row alone.
        self._decode = pipeline.DecodePipeline(self._active, language, self.sample_rate, self.device,
                                               lambda: (self._model, self._streaming))
        self._voice_dir = Path(settings.voice_dir).expanduser() if settings.voice_dir else None
        self.library = None  # the service's VoiceLibrary (voice_library.py): voices made while it runs
        self._word_heads: tuple = ()  # layer:head pairs whose attention times the words

    # -- description -----------------------------------------------------------------------
    @property
    def _config(self) -> str:
        """This language's YAML: `<language>.yaml` in TTS_POCKET_CONFIG_DIR, else TTS_POCKET_CONFIG."""
        if self.settings.pocket_config_dir:
            path = Path(self.settings.pocket_config_dir).expanduser() / f"{self.language}.yaml"
            if path.is_file():
                return str(path)
        return self.settings.pocket_config

    @property
    def quantized(self) -> bool:
        """int8 as Kyutai serves Pocket TTS on CPUs; off next to a CUDA device unless asked for."""
        if self.settings.pocket_quantize == "auto":
            return not self.settings.resolved_device().startswith("cuda")
        return self.settings.pocket_quantize == "on"

    @property
    def decoder_precision(self) -> str:
        """The Mimi decoder's number format in the frame loop: float32 unless asked (auto). bfloat16
        and int8 are lossy, and what they do to the pauses is not shown (bench/decoder_quality.py)."""
        wanted = self.settings.pocket_decoder_precision
        return "float32" if wanted == "auto" else wanted

    @property
    def model_id(self) -> str:
        if self._config:
            return self._config
        return f"kyutai/pocket-tts ({self.package_language})"

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def sample_rate(self) -> int:
        return 24000

    @property
    def languages(self) -> tuple[str, ...]:
        return (self.language,)

    @property
    def max_slots(self) -> int:
        return self.settings.max_batch_size

    @property
    def _predefined_voice(self) -> str | None:
        """The package's named voice for this language, usable only with its released weights."""
        if self._config:
            return None
        return internals.predefined_voice(self.package_language)

    @cached_property
    def _custom_voices(self) -> dict[str, Path]:
        """The voice folder, read once: a new voice file is picked up at the next start."""
        if self._voice_dir is None or not self._voice_dir.is_dir():
            return {}
        return {p.stem: p for p in sorted(self._voice_dir.iterdir())
                if p.suffix.lower() in VOICE_FILES
                or (p.suffix.lower() in STATE_FILES and not is_speaker_embedding(p))}

    def voices(self, language: str) -> tuple[list[str], str | None]:
        names = [self._predefined_voice] if self._predefined_voice else []
        names += [n for n in self._custom_voices if n not in names and n not in self._broken_voices]
        names += [n for n in self._library_voices() if n not in names and n not in self._broken_voices]
        default = self.settings.pocket_default_voice or (names[0] if names else None)
        return names, default

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        # pocket-tts quantizes through torch.ao, which torch has deprecated: nothing to act on here.
        # (A filter, not catch_warnings: two languages may load at once, and that is not thread-safe.)
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        self._load_model()
        # What every request needs whatever the path (text rules, voices, the package's generator):
        # without it nothing can be served, so the load fails here, naming what is missing.
        internals.check_installed(self._model, internals.SERVING)
        names, default = self.voices(self.language)
        if default is None:
            raise ValueError("Pocket TTS has no voice: set TTS_POCKET_VOICE to a WAV in TTS_VOICE_DIR")
        if default not in names:
            raise ValueError(f"TTS_POCKET_VOICE={default!r} is not a voice; available: {', '.join(names)}")
        problem = internals.frame_loop_problem(self._model)
        self._frame_loop = problem is None
        if self._frame_loop:
            self._streaming = frames.streaming_modules(self._model)
            if self.decoder_precision != "float32":
                frames.set_decoder_dtype(self._model, self.decoder_precision)
        if problem:
            logger.warning("Pocket TTS %s: %s; generating a sentence per step instead of a frame",
                           self.language, problem)
        self._word_heads = self._heads() if self._frame_loop else ()
        self.capabilities = dataclasses.replace(type(self).capabilities, word_times=bool(self._word_heads))
        self._voice_state(self._voice_source(default))
        # Every voice is encoded once here, so that no request encodes audio in the worker.
        for name in names:
            if name == default:
                continue
            try:
                self._voice_state(self._voice_source(name))
            except Exception as exc:
                logger.warning("voice %r left out: %s", name, exc)
                self._broken_voices.add(name)
        if self.library is not None:
            self.library.catch_up(self)  # library voices made before this model was loaded, and their states
        # Every voice is encoded: unless voices are cloned while it runs, the Mimi encoder (a third of
        # Mimi's weights) is never used again until the model is loaded anew.
        if not self.clones_voices:
            internals.drop_voice_encoder(self._model)
        return_freed_memory()

    def _heads(self) -> tuple:
        """The heads that time the words: TTS_POCKET_WORD_HEADS, else those known for these weights."""
        configured = self.settings.pocket_word_heads or {}
        for key in (self.language, None):
            if key in configured:
                heads = configured[key]
                alignment.check_heads(heads, *internals.attention_shape(self._model))
                return heads
        return alignment.released_heads(internals.weights_path(self._model))

    def _load_model(self) -> None:
        from pocket_tts import TTSModel

        quantize = self.quantized
        config = self._config
        if config:
            if not config.startswith("hf://") and not Path(config).expanduser().is_file():
                raise ModelDownloadError(f"TTS_POCKET_CONFIG={config!r}: no such file.")
            self._model = download(config, "the Pocket TTS model",
                                   lambda: TTSModel.load_model(config=config, quantize=quantize),
                                   "TTS_POCKET_CONFIG")
        else:
            self._model = download("kyutai/pocket-tts", f"the Pocket TTS {self.package_language} model",
                                   lambda: TTSModel.load_model(language=self.package_language,
                                                               quantize=quantize),
                                   "TTS_POCKET_LANGUAGES")

    def unload(self) -> None:
        """Give the model's memory back (an unused language); the next request loads it again."""
        with self._load_lock:
            if self._active or self.state != "ready":
                return
            self.state = "idle"
            self._model = None
            self._voice_states.clear()
        return_freed_memory()  # collects first

    # -- voices made while the service runs (voice_library.py) ------------------------------
    @property
    def clones_voices(self) -> bool:
        """Whether this model can make a voice from a recording (its encoder kept, released weights that clone)."""
        return bool(self.settings.voice_cloning and self._model is not None
                    and internals.clones_voices(self._model))

    def _library_voices(self) -> dict[str, Path]:
        return self.library.states_for(self) if self.library is not None else {}

    def clone_state(self, samples: np.ndarray) -> dict:
        """The voice state of a prepared 24 kHz recording, by the package's own audio-prompt path.

        Called outside the worker (the library's encoding thread): it reads the weights and writes
        only the new state, which no step touches."""
        import torch

        model = self._model
        with torch.no_grad():
            return model.get_state_for_audio_prompt(torch.from_numpy(samples).unsqueeze(0))

    def add_voice_state(self, path: Path, state: dict) -> None:
        """Keep a state made from a recording, under the file it was written to."""
        self._voice_states[str(path)] = state

    def read_voice_state(self, path: Path) -> dict:
        return self._model.get_state_for_audio_prompt(path)

    @staticmethod
    def write_voice_state(state: dict, path: Path) -> None:
        """The state as `pocket-tts export-voice` writes it."""
        from pocket_tts import export_model_state

        export_model_state(state, path)

    def _voice_source(self, name: str) -> str | Path:
        library = self._library_voices()
        if name in library:
            return library[name]
        custom = self._custom_voices
        if name in custom:
            return custom[name]
        return name  # a predefined voice name of the package

    def _voice_state(self, source: str | Path):
        key = str(source)
        if key not in self._voice_states:
            model = self._model
            self._voice_states[key] = download(
                "kyutai/pocket-tts", f"voice {Path(key).name!r}",
                lambda: model.get_state_for_audio_prompt(source), "TTS_POCKET_VOICE")
        return self._voice_states[key]

    # -- requests --------------------------------------------------------------------------
    def prepare(self, request: SynthesisRequest) -> None:
        names, default = self.voices(request.language)
        name = request.voice or default
        if name not in names:
            raise UnknownVoiceError(request.voice or "", names)
        pieces = self.pieces(request.text)
        if not pieces:
            raise NothingToSayError()
        if self._word_heads:
            for piece in pieces:
                piece.units = alignment.prompt_units(piece.text, internals.token_prefixes(self._model, piece.tokens))
            alignment.name_words([piece.units for piece in pieces], request.text)
        request.prepared = PocketPrepared(pieces, name, self._voice_source(name))

    def pieces(self, text: str) -> list[PocketPiece]:
        """The text as the package would speak it, checked here rather than in the worker.

        Each of our sentences goes through the package's own chunking and text rules (its
        `replace_characters`, `remove_semicolons`, capitalisation and final punctuation) and its
        tokenizer. A chunk those rules leave without a letter or digit is dropped: the package
        refuses an empty prompt, and a lone mark would only be noise.
        """
        model = self._model
        pieces = []
        for sentence in split_sentences(text):
            try:
                chunks = internals.text_chunks(model, sentence)
            except ValueError:
                continue  # empty once the package's characters are replaced
            for chunk in chunks:
                try:
                    prompt, frames_after_eos = internals.text_prompt(model, chunk)
                except ValueError:
                    continue
                if not has_speech(prompt):
                    continue
                pieces.append(PocketPiece(prompt, frames_after_eos, internals.prompt_tokens(model, prompt)))
        return pieces

    def admit(self, job) -> None:
        prepared: PocketPrepared = job.request.prepared
        self._active.append(_Active(job, collections.deque(prepared.sentences)))

    def release(self, job) -> None:
        self._decode.settle()  # its Mimi state and cache slot are in use until then
        for entry in list(self._active):
            if entry.job is job:
                self._active.remove(entry)
        self._keep_rows()

    def _keep_rows(self) -> None:
        """Give back the cache slots of pieces that ended or left (all of them once idle), and the
        decoder thread once idle: no thread is kept for nothing."""
        if not self._active:
            self._decode.close()
        if self._streaming is not None:
            frames.keep_rows(self._streaming, [entry.piece for entry in self._active if entry.piece is not None])

    def active_jobs(self) -> list:
        return [entry.job for entry in self._active]

    def step(self) -> list[SlotOutput] | None:
        if not self._active:
            return None
        if not self._frame_loop:
            return self._step_sentence()
        import torch

        outputs: dict = {}
        # The flow model and then the Mimi decoder, both in this thread with every core's torch
        # threads. (The package overlaps them in two Python threads of one torch thread each; with
        # a batch, that was slower here: the two threads queue for the GIL between ops.) A row
        # alone is pipelined (`pipeline.DecodePipeline.pipelined`).
        with torch.no_grad():
            rows = [entry for entry in list(self._active) if self._ready(entry)]
            pipelined = self._decode.before_flow(bool(rows), outputs)
            if rows:
                latents, eos = self._flow_frames([entry.piece for entry in rows])
                for index, entry in enumerate(rows):
                    self._after_flow(entry.piece, latents[index:index + 1], bool(eos[index]))
            self._decode.after_flow(pipelined, outputs)
            self._finish_words(outputs)
            for entry in list(self._active):
                if self._spoken(entry.piece) and not entry.sentences:
                    self._active.remove(entry)
                    output_for(outputs, entry.job).done = True
            self._keep_rows()
        return list(outputs.values())

    @staticmethod
    def _spoken(piece: _Piece | None) -> bool:
        """No piece, or one that ended and whose every frame is audio that was handed out."""
        return piece is None or piece.ended and not piece.undecoded and not piece.decoding

    def _finish_words(self, outputs: dict) -> None:
        """A piece that has ended gives its open and unreached words their times."""
        for entry in self._active:
            piece = entry.piece
            if piece is not None and self._spoken(piece) and piece.words is not None and not piece.words.finished:
                output_for(outputs, entry.job).words += piece.words.finish(entry.samples / self.sample_rate)

    # -- one frame per step, every request a row of one batch ------------------------------
    def _ready(self, entry: _Active) -> bool:
        """Give `entry` a piece with frames left, prompting the next one; False when none is left."""
        if entry.piece is not None and entry.piece.ended:
            if entry.piece.undecoded or entry.piece.decoding:
                return False  # its last frames are being decoded: the next piece starts after
            entry.piece = None  # its last frames were decoded last step
        if entry.piece is None:
            if not entry.sentences:
                return False  # finished once its last decoded frame is pushed
            entry.piece = self._start_piece(entry.job, entry.sentences.popleft())
            if entry.piece.words is not None:
                entry.piece.words.offset = entry.samples / self.sample_rate
        return True

    def _start_piece(self, job, piece: PocketPiece) -> _Piece:
        """A fresh copy of the voice state, sized as `_generate` sizes it; its tokens run at its first step."""
        voice = self._voice_states[str(job.request.prepared.voice_source)]
        start = frames.start_piece(self._model, self._streaming, voice, piece.tokens)
        words = None
        if piece.units is not None and self._word_heads:
            words = alignment.PieceWords(piece.units, 0.0, self.frame_seconds)
        return _Piece(start.flow_state, start.mimi_state, start.latent, start.max_frames, piece.frames_after_eos,
                      prompt=start.prompt, text_at=start.text_at, words=words)

    def _after_flow(self, piece: _Piece, latent, is_eos: bool) -> None:
        """Keep the frame to be spoken, or end the piece (the package's end-of-speech and length rules)."""
        step = piece.frame
        piece.frame += 1
        if is_eos and piece.eos_frame is None and step >= frames.min_frames_before_eos(self._model):
            piece.eos_frame = step
        if piece.eos_frame is not None and step >= piece.eos_frame + piece.frames_after_eos:
            piece.ended = True
            return
        piece.latent = latent
        piece.undecoded.append(latent)
        piece.heard.append(piece.attention)
        # The package's length limit, for a piece that never says its end.
        piece.ended = piece.frame >= piece.max_frames

    def _flow_frames(self, pieces: list[_Piece]):
        """Run one step of the flow model for every piece, in one batch: each one's next latent
        and end-of-speech flag, in order (the package's `FlowLMModel.forward`).

        A piece that has just started runs its text prompt and its first frame together, the
        prompt's tokens before the frame in one sequence, as `FlowLMModel.forward` takes them
        (the package's `_generate` runs them one after the other: a whole step more before the
        first audio).
        """
        prompts = [piece.prompt for piece in pieces]
        for piece in pieces:
            piece.prompt = None
        heard = None
        if self._word_heads:
            heard = alignment.TextAttention(self._word_heads, [
                (piece.text_at, piece.text_at + piece.words.units.shares.shape[0]) if piece.words else None
                for piece in pieces])
        result = frames.flow_step(self._model, self._streaming, [piece.latent for piece in pieces], prompts,
                                     [piece.flow_state for piece in pieces], heard)
        for index, piece in enumerate(pieces):
            piece.attention = heard.sums[index] if heard is not None else None
        return result

    # -- one sentence per step (other pocket-tts versions) ---------------------------------
    def _step_sentence(self) -> list[SlotOutput] | None:
        if not self._active:
            return None
        entry = self._active.popleft()
        job = entry.job
        limit = int(job.request.max_audio_seconds * self.sample_rate)
        state = self._voice_states[str(job.request.prepared.voice_source)]
        piece: PocketPiece | None = entry.sentences.popleft() if entry.sentences else None
        stop = threading.Event()
        truncated = False
        chunks = []
        if piece is not None:
            for chunk in internals.sentence_audio(self._model, state, piece.text, piece.frames_after_eos, stop):
                pcm = chunk.detach().cpu().numpy().astype(np.float32, copy=False)
                if entry.samples + len(pcm) >= limit:
                    pcm = pcm[: max(limit - entry.samples, 0)]
                    truncated = True
                if len(pcm):
                    chunks.append(np.clip(pcm, -1.0, 1.0))
                    entry.samples += len(pcm)
                if truncated or job.cancelled:
                    stop.set()  # the scheduler truncates it, or frees it and tells the requester
                    break
        out = SlotOutput(job, np.concatenate(chunks) if chunks else None)
        if (entry.sentences and not truncated) or job.cancelled:
            self._active.append(entry)  # back of the line: the others speak their next sentence first
        elif not truncated:
            out.done = True
        return [out]
