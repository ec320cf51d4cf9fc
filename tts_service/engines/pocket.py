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
in batches too, up to four frames per row at once. The loop follows the package's own
`_generate` / `_autoregressive_generation` / `_decode_audio_worker` and `FlowLMModel.forward` /
`StreamingMultiheadAttention.forward` (pocket_tts 4.0.1), so that a request alone gets the audio
`generate_audio` gives up to rounding; it is pinned to that version and falls back to the
package's per-sentence generator when the internals differ.
"""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import threading
import warnings
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Settings
from ..hub import ModelDownloadError, download
from ..text import split_sentences
from .base import Engine, NothingToSayError, SynthesisRequest, UnknownVoiceError, is_speaker_embedding

if TYPE_CHECKING:
    from ..scheduler import Job

logger = logging.getLogger(__name__)

PACKAGE_LANGUAGES = {"en": "english", "fr": "french", "de": "german", "it": "italian",
                     "pt": "portuguese", "es": "spanish", "nl": "dutch"}
VOICE_FILES = (".wav", ".mp3", ".flac", ".ogg")
STATE_FILES = (".safetensors",)
# Most frames the Mimi decoder turns into audio at once for one request (320 ms).
DECODE_CHUNK_FRAMES = 4
# The package version whose internals the frame loop was written against.
FRAME_LOOP_VERSION = "4.0.1"
_MODEL_ATTRIBUTES = ("_run_flow_lm_and_increment_step", "_expand_kv_cache", "_flow_lm_current_end",
                     "_estimate_max_gen_len", "_MIN_FRAMES_BEFORE_EOS", "flow_lm", "mimi", "eos_threshold",
                     "temp", "noise_clamp", "sampler_decode_steps")
_FLOW_ATTRIBUTES = ("emb_std", "emb_mean", "ldim", "dtype", "conditioner", "bos_emb", "input_linear",
                    "transformer", "out_norm", "z_proj", "out_eos", "flow_net", "flow_type")
_LAYER_ATTRIBUTES = ("self_attn", "norm1", "layer_scale_1", "_ff_block")
_ATTENTION_ATTRIBUTES = ("in_proj", "out_proj", "rope", "_cache_backend", "dim_per_head", "attn_dim",
                         "num_heads", "num_kv_heads", "context", "get_state")


def frame_loop_problem(model) -> str | None:
    """Why the frame loop cannot drive this model (None when it can): version and internals."""
    try:
        version = importlib.metadata.version("pocket-tts")
    except importlib.metadata.PackageNotFoundError:
        return "pocket-tts is not installed as a distribution"
    if version != FRAME_LOOP_VERSION:
        return f"pocket-tts {version} is installed; the frame loop was written for {FRAME_LOOP_VERSION}"
    missing = [name for name in _MODEL_ATTRIBUTES if not hasattr(model, name)]
    mimi = getattr(model, "mimi", None)
    missing += [f"mimi.{name}" for name in ("decode_from_latent", "encoder_frame_rate", "frame_rate", "quantizer",
                                            "_to_encoder_framerate", "decoder", "decoder_transformer")
                if not hasattr(mimi, name)]
    missing += [f"mimi.decoder_transformer.{name}" for name in ("input_proj", "output_projs", "transformer")
                if not hasattr(getattr(mimi, "decoder_transformer", None), name)]
    flow = getattr(model, "flow_lm", None)
    missing += [f"flow_lm.{name}" for name in _FLOW_ATTRIBUTES if not hasattr(flow, name)]
    layers = list(getattr(getattr(flow, "transformer", None), "layers", None) or [])
    if not layers:
        missing.append("flow_lm.transformer.layers")
    for layer in layers[:1]:
        missing += [f"layer.{name}" for name in _LAYER_ATTRIBUTES if not hasattr(layer, name)]
        missing += [f"self_attn.{name}" for name in _ATTENTION_ATTRIBUTES
                    if not hasattr(getattr(layer, "self_attn", None), name)]
    if getattr(flow, "flow_type", None) not in ("lsd", "flow_matching", "drifting", "pointwise"):
        missing.append(f"a decoder for flow_type {getattr(flow, 'flow_type', None)!r}")
    if missing:
        return f"pocket-tts lacks {', '.join(missing)}"
    return None


def _return_freed_memory() -> None:
    """Hand the heap freed while loading back to the system (glibc keeps it otherwise).

    Loading reads the float32 weights and then quantizes them: without this, about 200 MB per
    model stays resident although nothing uses it.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def _decoders() -> dict:
    from pocket_tts.models import flow_lm

    return {"lsd": flow_lm.lsd_decode, "flow_matching": flow_lm.ot_decode,
            "drifting": flow_lm.drifting_decode, "pointwise": flow_lm.pointwise_decode}


class _LazyDecoders(dict):
    """The package's flow decoders by `flow_type`, imported on first use (routes never import torch)."""

    def __missing__(self, key):
        self.update(_decoders())
        return dict.__getitem__(self, key)


_FLOW_DECODERS = _LazyDecoders()


def _stateful_modules(model, prefixes: tuple[str, ...] = ("",)) -> list[tuple[str, object]]:
    """The streaming modules under `prefixes`, by the names their states are kept under.

    Listed once at load: the package's `init_states` / `increment_steps` walk every module on
    every call, and for Mimi include the encoder, which decoding never uses (its caches alone
    would be tens of MB per request).
    """
    from pocket_tts.modules.stateful_module import StatefulModule

    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, StatefulModule) and name.startswith(prefixes)]


def _sized_copy(state: dict, length: int) -> dict:
    """A copy of a streaming state whose KV caches have room for `length` positions.

    What `copy.deepcopy` and the package's `_expand_kv_cache` make, without first filling the
    room with NaN: attention reads only the positions written so far (the package's
    `complete_kv`), and not writing tens of MB per request keeps a request's start short.
    """
    import torch

    copied = {}
    for name, module_state in state.items():
        copied[name] = {}
        for key, value in module_state.items():
            if key == "cache" and value.shape[2] < length:
                cache = torch.empty(value.shape[:2] + (length,) + value.shape[3:], dtype=value.dtype,
                                    device=value.device)
                cache[:, :, :value.shape[2]] = value
                copied[name][key] = cache
            else:
                copied[name][key] = value.clone()
    return copied


def _advance(modules: list[tuple[str, object]], state: dict, steps: int) -> None:
    """The package's `increment_steps` over modules listed once."""
    for name, module in modules:
        module.increment_step(state[name], steps)


def _transformer_rows(transformer, x, states, lengths):
    """`StreamingTransformer.forward` for rows laid end to end in `x` ([1, sum(lengths), dim]).

    Row i is `lengths[i]` positions long and has its own streaming state `states[i]`.
    """
    import torch

    for layer in transformer.layers:
        attention = layer.self_attn
        projected = attention.in_proj(layer.norm1(x))
        rows, start = [], 0
        for state, length in zip(states, lengths):
            rows.append(_attend(attention, projected[:, start:start + length], state))
            start += length
        update = attention.out_proj(torch.cat(rows, dim=1))
        x = x.to(update) + layer.layer_scale_1(update)
        x = layer._ff_block(x)
    return x


def _attend(attention, projected, state):
    """`StreamingMultiheadAttention.forward` after its input projection, for one row and its state."""
    import torch
    from pocket_tts.modules.attention import _build_attention_mask
    from torch.nn import functional as F

    b, t, _ = projected.shape
    d = attention.dim_per_head
    q = projected[..., : attention.attn_dim].view(b, t, attention.num_heads, d)
    k, v = torch.unbind(projected[..., attention.attn_dim:].view(b, t, 2, attention.num_kv_heads, d), dim=2)
    own = attention.get_state(state)
    q, k = attention.rope(q, k, offset=attention._cache_backend.rope_offset(own, b, q.device))
    q = q.transpose(1, 2)
    k_attn, v_attn, pos_k, offset = attention._cache_backend.append_and_get(k, v, own)
    if attention.num_kv_heads != attention.num_heads:
        k_attn = k_attn.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
        v_attn = v_attn.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
    pos_q = offset.view(-1, 1) + torch.arange(t, device=q.device, dtype=torch.long).view(1, -1)
    mask = _build_attention_mask(pos_q, pos_k, attention.context)
    x = F.scaled_dot_product_attention(q, k_attn, v_attn, mask, dropout_p=0.0).transpose(1, 2)
    return x.reshape(b, t, -1)


@dataclass
class PocketPiece:
    """One chunk as the package will speak it: its own text rules applied, tokens counted."""

    text: str
    frames_after_eos: int
    tokens: list[int]


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
    ended: bool = False  # no more frames: what is left undecoded is decoded this step

    @property
    def due(self) -> bool:
        """Whether its latents are decoded this step: first frame at once, then in growing chunks.

        The Mimi decoder costs half as much per frame when it decodes four at once, but a listener
        must never run out: a chunk is at most as long as the audio already sent.
        """
        return bool(self.undecoded) and (
            self.ended or len(self.undecoded) >= min(DECODE_CHUNK_FRAMES, max(1, self.decoded)))


@dataclass(eq=False)  # found in the active list by identity: its fields hold tensors
class _Active:
    job: "Job"
    sentences: collections.deque = field(default_factory=collections.deque)
    samples: int = 0
    piece: _Piece | None = None


class PocketEngine(Engine):
    provider = "Kyutai Pocket TTS"

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
        self._flow_modules: list[tuple[str, object]] = []
        self._mimi_modules: list[tuple[str, object]] = []  # the decoder's side only
        self._mimi_conv_states: list[str] = []
        self._mimi_fresh: dict = {}  # the decoder's streaming state before any frame, caches empty
        self._voice_states: dict[str, object] = {}
        self._broken_voices: set[str] = set()
        self._active: collections.deque[_Active] = collections.deque()
        self._voice_dir = Path(settings.voice_dir).expanduser() if settings.voice_dir else None
        self._stop = threading.Event()

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
        from pocket_tts.default_parameters import DEFAULT_VOICE_FALLBACK, DEFAULT_VOICE_FOR_LANGUAGE
        return DEFAULT_VOICE_FOR_LANGUAGE.get(self.package_language, DEFAULT_VOICE_FALLBACK)

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
        default = self.settings.pocket_default_voice or (names[0] if names else None)
        return names, default

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        # pocket-tts quantizes through torch.ao, which torch has deprecated: nothing to act on here.
        # (A filter, not catch_warnings: two languages may load at once, and that is not thread-safe.)
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        self._load_model()
        names, default = self.voices(self.language)
        if default is None:
            raise ValueError("Pocket TTS has no voice: set TTS_POCKET_VOICE to a WAV in TTS_VOICE_DIR")
        if default not in names:
            raise ValueError(f"TTS_POCKET_VOICE={default!r} is not a voice; available: {', '.join(names)}")
        problem = frame_loop_problem(self._model)
        self._frame_loop = problem is None
        if self._frame_loop:
            from pocket_tts.modules.attention import StreamingMultiheadAttention

            self._flow_modules = _stateful_modules(self._model.flow_lm)
            self._mimi_modules = _stateful_modules(self._model.mimi, ("decoder.", "upsample.", "decoder_transformer."))
            self._mimi_conv_states = [name for name, module in self._mimi_modules
                                      if not isinstance(module, StreamingMultiheadAttention)]
            self._mimi_fresh = {name: module.init_state(1, sequence_length=0) for name, module in self._mimi_modules}
        if problem:
            logger.warning("Pocket TTS %s: %s; generating a sentence per step instead of a frame",
                           self.language, problem)
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
        # Every voice is encoded: the Mimi encoder (a third of Mimi's weights) is never used again
        # until the model is loaded anew, when the voice folder is read again too.
        for part in ("encoder", "encoder_transformer", "downsample"):
            setattr(self._model.mimi, part, None)
        _return_freed_memory()

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
        import gc

        with self._load_lock:
            if self._active or self.state != "ready":
                return
            self.state = "idle"
            self._model = None
            self._voice_states.clear()
        gc.collect()
        _return_freed_memory()

    def _voice_source(self, name: str) -> str | Path:
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
        request.prepared = PocketPrepared(pieces, name, self._voice_source(name))

    def pieces(self, text: str) -> list[PocketPiece]:
        """The text as the package would speak it, checked here rather than in the worker.

        Each of our sentences goes through the package's own chunking and text rules (its
        `replace_characters`, `remove_semicolons`, capitalisation and final punctuation) and its
        tokenizer. A chunk those rules leave without a letter or digit is dropped: the package
        refuses an empty prompt, and a lone mark would only be noise.
        """
        from pocket_tts.default_parameters import MAX_TOKEN_PER_CHUNK
        from pocket_tts.models.text_chunking import prepare_text_prompt, split_into_best_sentences

        model = self._model
        rules = (model.pad_with_spaces_for_short_inputs, model.remove_semicolons,
                 model.append_terminal_punctuation, model.capitalize_first_letter, model.replace_characters)
        conditioner = model.flow_lm.conditioner
        pieces = []
        for sentence in split_sentences(text):
            try:
                chunks = split_into_best_sentences(conditioner.tokenizer, sentence, MAX_TOKEN_PER_CHUNK,
                                                   *rules[:2], append_terminal_punctuation=rules[2],
                                                   capitalize_first_letter=rules[3], replace_characters=rules[4])
            except ValueError:
                continue  # empty once the package's characters are replaced
            for chunk in chunks:
                try:
                    prompt, guess = prepare_text_prompt(chunk, *rules)
                except ValueError:
                    continue
                if not any(ch.isalnum() for ch in prompt):
                    continue
                tokens = conditioner.prepare(prompt)[0].tolist()
                after_eos = model.model_recommended_frames_after_eos
                pieces.append(PocketPiece(prompt, after_eos if after_eos is not None else guess + 2, tokens))
        return pieces

    def admit(self, job: "Job") -> None:
        prepared: PocketPrepared = job.request.prepared
        self._active.append(_Active(job, collections.deque(prepared.sentences)))

    def release(self, job: "Job") -> None:
        for entry in list(self._active):
            if entry.job is job:
                self._active.remove(entry)

    def active_jobs(self) -> list["Job"]:
        return [entry.job for entry in self._active]

    def step(self) -> bool:
        if not self._active:
            return False
        if not self._frame_loop:
            return self._step_sentence()
        import torch

        # The flow model and then the Mimi decoder, both in this thread with every core's torch
        # threads. (The package overlaps them in two Python threads of one torch thread each; with
        # a batch, that was half as fast here: the two threads queue for the GIL between ops.)
        with torch.no_grad():
            rows = [entry for entry in list(self._active) if self._ready(entry)]
            if rows:
                latents, eos = self._flow_frames([entry.piece for entry in rows])
                for index, entry in enumerate(rows):
                    self._after_flow(entry.piece, latents[index:index + 1], bool(eos[index]))
            self._decode_due()
            for entry in list(self._active):
                if (entry.piece is None or entry.piece.ended) and not entry.sentences:
                    self._active.remove(entry)
                    entry.job.finish()
        return True

    def _decode_due(self) -> None:
        """Decode the latents of every row once one row is due, then push their audio.

        Decoding every row when one is due keeps the rows in step, so that they share one batch
        (rows with the same number of frames waiting; a request's first frame goes first).
        """
        import torch

        waiting = [entry for entry in self._active if entry.piece is not None and entry.piece.undecoded]
        if not any(entry.piece.due for entry in waiting):
            return
        by_count: dict[int, list[_Active]] = collections.defaultdict(list)
        for entry in waiting:
            by_count[len(entry.piece.undecoded)].append(entry)
        for count in sorted(by_count):
            entries = by_count[count]
            pieces = [entry.piece for entry in entries]
            latents = torch.cat([torch.cat(piece.undecoded, 1) for piece in pieces], 0)
            for piece in pieces:
                piece.undecoded = []
                piece.decoded += count
            for entry, pcm in zip(entries, self._decode_rows(pieces, latents)):
                if entry in self._active:  # not truncated meanwhile
                    self._push(entry, pcm)

    # -- one frame per step, every request a row of one batch ------------------------------
    def _ready(self, entry: _Active) -> bool:
        """Give `entry` a piece with frames left, prompting the next one; False when none is left."""
        if entry.piece is not None and entry.piece.ended:
            entry.piece = None  # its last frames were decoded last step
        if entry.piece is None:
            if not entry.sentences:
                return False  # finished once its last decoded frame is pushed
            entry.piece = self._start_piece(entry.job, entry.sentences.popleft())
        return True

    def _push(self, entry: _Active, pcm: np.ndarray) -> None:
        job = entry.job
        limit = int(job.request.max_audio_seconds * self.sample_rate)
        pcm = pcm[: max(limit - entry.samples, 0)]
        if len(pcm):
            job.push_audio(np.clip(pcm, -1.0, 1.0))
            entry.samples += len(pcm)
        if entry.samples >= limit:
            self._active.remove(entry)
            job.finish(truncated=True)

    def _start_piece(self, job: "Job", piece: PocketPiece) -> _Piece:
        """A fresh copy of the voice state, sized as `_generate` sizes it; its tokens run at its first step."""
        import torch

        model = self._model
        voice = self._voice_states[str(job.request.prepared.voice_source)]
        tokens = torch.tensor([piece.tokens], dtype=torch.long, device=model.device)
        max_frames = model._estimate_max_gen_len(len(piece.tokens))
        state = _sized_copy(voice, model._flow_lm_current_end(voice) + len(piece.tokens) + max_frames)
        steps_per_latent = int(model.mimi.encoder_frame_rate / model.mimi.frame_rate)
        mimi_state = _sized_copy(self._mimi_fresh, max_frames * steps_per_latent)
        latent = torch.full((1, 1, model.flow_lm.ldim), float("NaN"), device=model.device,
                            dtype=model.flow_lm.dtype)
        return _Piece(state, mimi_state, latent, max_frames, piece.frames_after_eos, prompt=tokens)

    def _after_flow(self, piece: _Piece, latent, is_eos: bool) -> None:
        """Keep the frame to be spoken, or end the piece (the package's end-of-speech and length rules)."""
        step = piece.frame
        piece.frame += 1
        if is_eos and piece.eos_frame is None and step >= self._model._MIN_FRAMES_BEFORE_EOS:
            piece.eos_frame = step
        if piece.eos_frame is not None and step >= piece.eos_frame + piece.frames_after_eos:
            piece.ended = True
            return
        piece.latent = latent
        piece.undecoded.append(latent)
        # The package's length limit, for a piece that never says its end.
        piece.ended = piece.frame >= piece.max_frames

    def _flow_frames(self, pieces: list[_Piece]):
        """Run one step of the flow model for every piece, in one batch: each one's next latent
        and end-of-speech flag, in order (the package's `FlowLMModel.forward`).

        A piece that has just started runs its text prompt and its first frame together, the
        prompt's tokens before the frame in one sequence, as `FlowLMModel.forward` takes them
        (the package's `_generate` runs them one after the other: a whole step more before the
        first audio). All rows' tokens go through the linear layers (where the time goes) as one
        sequence; attention runs per row over that row's own KV cache at its own positions,
        exactly as the package does for one request.
        """
        import torch

        model = self._model
        flow = model.flow_lm
        sequence = torch.cat([piece.latent for piece in pieces], dim=0)
        frames = flow.input_linear(torch.where(torch.isnan(sequence), flow.bos_emb, sequence))
        inputs = []
        for index, piece in enumerate(pieces):
            frame = frames[index:index + 1]
            inputs.append(frame if piece.prompt is None else torch.cat([flow.conditioner(piece.prompt), frame], 1))
            piece.prompt = None
        lengths = [part.shape[1] for part in inputs]
        x = _transformer_rows(flow.transformer, torch.cat(inputs, dim=1), [p.flow_state for p in pieces], lengths)
        for piece, length in zip(pieces, lengths):
            _advance(self._flow_modules, piece.flow_state, length)
        x = x[0, np.cumsum(lengths) - 1][:, None]
        if flow.out_norm:
            x = flow.out_norm(x)
        if flow.z_proj is not None:
            x = flow.z_proj(x)
        out = x.to(torch.float32)[:, -1]
        eos = (flow.out_eos(out) > model.eos_threshold).view(-1).tolist()
        noise = torch.empty(out.shape[:-1] + (flow.ldim,), dtype=out.dtype, device=out.device)
        std = model.temp ** 0.5
        if model.noise_clamp is None:
            torch.nn.init.normal_(noise, mean=0.0, std=std)
        else:
            torch.nn.init.trunc_normal_(noise, mean=0.0, std=std, a=-model.noise_clamp, b=model.noise_clamp)
        latents = _FLOW_DECODERS[flow.flow_type](partial(flow.flow_net, out), noise, model.sampler_decode_steps)
        return latents[:, None, :], eos

    def _decode_rows(self, pieces: list[_Piece], latents) -> list[np.ndarray]:
        """PCM for each piece's frames ([rows, frames, dim]): the package's `MimiModel.decode_from_latent`, batched.

        The convolutions' streaming states are stacked into one batch and split back after; the
        decoder transformer attends per row over each row's own cache, as in `_flow_frames`.
        """
        import torch

        model = self._model
        mimi = model.mimi
        states = [piece.mimi_state for piece in pieces]
        stacked = {name: {key: torch.cat([state[name][key] for state in states], dim=0) for key in states[0][name]}
                   for name in self._mimi_conv_states}
        latent = mimi.quantizer((latents * model.flow_lm.emb_std + model.flow_lm.emb_mean).transpose(-1, -2))
        emb = mimi._to_encoder_framerate(latent, stacked)
        projected = mimi.decoder_transformer
        emb = emb.transpose(1, 2)
        if projected.input_proj is not None:
            emb = projected.input_proj(emb)
        rows, steps_per_row, dim = emb.shape
        emb = _transformer_rows(projected.transformer, emb.reshape(1, rows * steps_per_row, dim), states,
                                [steps_per_row] * rows).reshape(rows, steps_per_row, dim)
        emb = projected.output_projs[0](emb).transpose(1, 2)
        audio = mimi.decoder(emb, stacked)
        steps = int(mimi.encoder_frame_rate / mimi.frame_rate) * latents.shape[1]
        pcm = []
        for index, (piece, state) in enumerate(zip(pieces, states)):
            for name, module_state in stacked.items():
                for key, value in module_state.items():
                    state[name][key] = value[index:index + 1]
            _advance(self._mimi_modules, state, steps)
            row = audio[index:index + 1]
            if not piece.faded:
                # The package fades the first 5 ms of every chunk in: a fresh decoder state clicks.
                fade = torch.linspace(0, 1, self.sample_rate // 200)
                n = min(fade.numel(), row.shape[-1])
                row[..., :n] *= fade[:n].to(row)
                piece.faded = True
            pcm.append(row[0, 0].detach().cpu().numpy().astype(np.float32, copy=False))
        return pcm

    # -- one sentence per step (other pocket-tts versions) ---------------------------------
    def _step_sentence(self) -> bool:
        if not self._active:
            return False
        entry = self._active.popleft()
        job = entry.job
        limit = int(job.request.max_audio_seconds * self.sample_rate)
        state = self._voice_states[str(job.request.prepared.voice_source)]
        piece: PocketPiece | None = entry.sentences.popleft() if entry.sentences else None
        stop = threading.Event()
        truncated = False
        if piece is not None:
            for chunk in self._model._generate_audio_stream_short_text(
                    model_state=state, text_to_generate=piece.text, frames_after_eos=piece.frames_after_eos,
                    copy_state=True, stop=stop):
                pcm = chunk.detach().cpu().numpy().astype(np.float32, copy=False)
                if entry.samples + len(pcm) >= limit:
                    pcm = pcm[: max(limit - entry.samples, 0)]
                    truncated = True
                if len(pcm):
                    job.push_audio(np.clip(pcm, -1.0, 1.0))
                    entry.samples += len(pcm)
                if truncated or job.cancelled:
                    stop.set()
                    break
        if truncated:
            job.finish(truncated=True)
        elif job.cancelled:
            return True  # the scheduler frees it and tells the requester
        elif entry.sentences:
            self._active.append(entry)  # back of the line: the others speak their next sentence first
        else:
            job.finish()
        return True
