"""Kyutai DSM TTS through moshi, with requests joining and leaving a running batch.

The model is put in streaming mode once for `max_batch_size` slots. Each request takes a slot:
its streaming state is reset, its voice is written into the slot's cross-attention cache, and
its words are fed by moshi's TTS state machine. Every step advances all active slots by one
frame (80 ms) and routes each slot's decoded PCM to its own request. The slot mechanics follow
what Kyutai's own service does (`rust/moshi-server/tts.py` in kyutai-labs/moshi: exec masks,
per-slot `reset_streaming`, cross-attention cache updates); the code here is our own.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ...config import Settings
from ..hub import ModelDownloadError, download, dsm_checkpoint_info, looks_like_path, repo_files
from ...text.pauses import normalize_breaks
from . import internals
from ..base import (Capabilities, Engine, NothingToSayError, RequestError, SlotOutput, SynthesisRequest,
                   UnknownVoiceError, is_speaker_embedding)

logger = logging.getLogger(__name__)

VOICE_SUFFIX = ".safetensors"
# A repository voice that is not in the local cache yet is fetched once, within this time.
VOICE_FETCH_SECONDS = 30.0
# A request naming a repository voice right after the start waits this long for the voice list.
VOICE_LIST_WAIT_SECONDS = 5.0


@dataclass
class DsmPrepared:
    entries: list
    voice_path: Path | None
    voice_name: str
    cross: object = None  # the voice's cross-attention source, computed outside the worker
    has_words: bool = False  # only the very first words of a request get the speaker token


@dataclass
class _Slot:
    index: int
    job: object = None
    state: object = None
    offset: int = 0
    words_seen: int = 0
    text_complete: bool = True


class DsmEngine(Engine):
    provider = "Kyutai DSM TTS"
    kind = "dsm"
    aliases = ("dsm-tts", "kyutai-dsm")
    capabilities = Capabilities(streams_text=True, word_times=True, side_by_side_pieces=True)

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self._device = settings.device
        self._model = None
        self._slots: list[_Slot] = []
        self._voice_dir = Path(settings.voice_dir).expanduser() if settings.voice_dir else None
        self._cross_cache: dict[Path, object] = {}
        self._cross_lock = threading.Lock()
        self._pending_resets: list[int] = []
        self._default_voice_path: Path | None = None
        self._repo_voices: frozenset[str] | None = None  # listed once, off the request path
        self._repo_listed = threading.Event()
        self._fetches: dict[str, concurrent.futures.Future] = {}
        self._fetch_lock = threading.Lock()
        self._fetcher = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="voice-fetch")

    # -- description -----------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.settings.dsm_model

    @property
    def device(self) -> str:
        return self._device

    @property
    def sample_rate(self) -> int:
        return 24000

    @property
    def languages(self) -> tuple[str, ...]:
        return self.settings.dsm_languages

    @property
    def max_slots(self) -> int:
        return self.settings.max_batch_size

    def voices(self, language: str) -> tuple[list[str], str | None]:
        names = [self.settings.dsm_voice if not looks_like_path(self.settings.dsm_voice)
                 else Path(self.settings.dsm_voice).name.split(".")[0]]
        names += sorted(self._custom_voices)
        return list(dict.fromkeys(names)), names[0]

    @cached_property
    def _custom_voices(self) -> dict[str, Path]:
        """The voice folder, read once: a new voice file is picked up at the next start."""
        if self._voice_dir is None or not self._voice_dir.is_dir():
            return {}
        return {p.name[: -len(VOICE_SUFFIX)].split(".")[0]: p
                for p in sorted(self._voice_dir.glob(f"*{VOICE_SUFFIX}")) if is_speaker_embedding(p)}

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from moshi.conditioners import dropout_all_conditions
        from moshi.models.lm import LMGen
        from moshi.models.tts import TTSModel
        from moshi.modules.transformer import StreamingMultiheadAttention

        internals.check_installed()  # a moshi that moved a name fails here, naming it, not mid-request
        settings = self.settings
        self._torch = torch
        self._device = settings.resolved_device()
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32,
                 "auto": torch.bfloat16 if self._device.startswith("cuda") else torch.float32}[settings.dsm_dtype]
        use_compile = settings.torch_compile == "on" or (
            settings.torch_compile == "auto" and self._device.startswith("cuda"))
        self._compile_context = contextlib.nullcontext if use_compile else _no_compile

        checkpoint = dsm_checkpoint_info(settings.dsm_model)
        with self._compile_context():
            tts = TTSModel.from_checkpoint_info(
                checkpoint, voice_repo=settings.dsm_voice_repo, n_q=settings.dsm_n_q,
                temp=settings.dsm_temperature, device=self._device, dtype=dtype)
        self._model = tts
        if tts.valid_cfg_conditionings:
            # CFG-distilled: the coefficient is a condition, and no doubled batch is needed.
            if settings.dsm_cfg_coef not in tts.valid_cfg_conditionings:
                valid = ", ".join(str(v) for v in sorted(tts.valid_cfg_conditionings))
                raise ValueError(f"TTS_DSM_CFG_COEF={settings.dsm_cfg_coef} is not supported by this model; "
                                 f"valid values: {valid}")
            self._cfg_condition = settings.dsm_cfg_coef
            tts.cfg_coef = 1.0
            cfg_is_no_text = False
        else:
            self._cfg_condition = None
            tts.cfg_coef = settings.dsm_cfg_coef
            cfg_is_no_text = True

        self._default_voice_path = self._resolve_voice(settings.dsm_voice, setting="TTS_DSM_VOICE")
        threading.Thread(target=self._list_repo_voices, name="voice-list", daemon=True).start()
        lm = tts.lm
        if not tts.multistream:
            lm.dep_q = tts.n_q
        batch = self.max_slots
        if tts.multi_speaker:
            attributes = [self._attributes(self._default_voice_path)] * batch
            if tts.cfg_coef != 1.0:
                attributes = attributes + dropout_all_conditions(attributes)
            condition_tensors = lm.condition_provider.prepare_and_provide(attributes)
        else:
            condition_tensors = {}
        self._cross_attentions = [m for m in lm.modules()
                                  if isinstance(m, StreamingMultiheadAttention) and m.cross_attention]
        self._lm_gen = LMGen(
            lm, temp=tts.temp, temp_text=tts.temp, cfg_coef=tts.cfg_coef,
            condition_tensors=condition_tensors, on_text_hook=self._on_text_hook,
            on_audio_hook=self._on_audio_hook, on_text_logits_hook=self._on_text_logits_hook,
            cfg_is_no_text=cfg_is_no_text, support_out_of_sync=True)
        self._lm_gen.streaming_forever(batch)
        tts.mimi.streaming_forever(batch)
        self.frame_rate = tts.mimi.frame_rate
        self._samples_per_frame = int(tts.mimi.sample_rate / tts.mimi.frame_rate)
        self._input_tokens = torch.full((batch, lm.n_q - lm.dep_q, 1), tts.machine.token_ids.zero,
                                        dtype=torch.long, device=self._device)
        self._no_depformer = torch.full((batch, lm.dep_q, 1), tts.machine.token_ids.zero,
                                        dtype=torch.long, device=self._device)
        self._slots = [_Slot(index=i) for i in range(batch)]
        self._step_actives = [False] * batch
        self._warmup()
        logger.info("DSM model %s ready on %s (%s, %d slots, n_q=%d)", self.model_id, self._device,
                    str(dtype).removeprefix("torch."), batch, tts.n_q)

    def _warmup(self) -> None:
        torch = self._torch
        everyone = torch.ones(self.max_slots, dtype=torch.bool)
        with torch.no_grad(), self._compile_context():
            for _ in range(2):
                self._lm_gen.set_exec_mask(everyone)
                self._model.mimi.set_exec_mask(everyone)
                frame = self._lm_gen.step(self._input_tokens)
                self._model.mimi.decode(frame[:, 1:].clamp(min=0))
            self._lm_gen.reset_streaming(everyone.to(self._device))
            self._model.mimi.reset_streaming(everyone.to(self._device))

    # -- voices ----------------------------------------------------------------------------
    def _resolve_voice(self, voice: str, setting: str | None = None) -> Path:
        """A voice name (custom directory, voice repo) or configured local file → embedding path."""
        custom = self._custom_voices
        if voice in custom:
            return custom[voice]
        if voice.endswith(VOICE_SUFFIX) and (setting is not None or looks_like_path(voice)):
            path = Path(voice).expanduser()
            if setting is not None and path.is_file():
                return path
            if setting is not None:
                raise ModelDownloadError(f"{setting}={voice!r}: no such voice embedding file.")
        tts = self._model
        return download(self.settings.dsm_voice_repo, f"voice {voice!r}",
                        lambda: Path(tts.get_voice_path(voice)), setting or "voice")

    def _list_repo_voices(self) -> None:
        """The voice repository's names, once: from Hugging Face, else from the local cache."""
        suffix = self._model.voice_suffix or VOICE_SUFFIX
        try:
            files = repo_files(self.settings.dsm_voice_repo)
            self._repo_voices = frozenset(f[: -len(suffix)] for f in files if f.endswith(suffix))
            logger.info("%d voices in %s", len(self._repo_voices), self.settings.dsm_voice_repo)
        except Exception as exc:  # a listing that fails leaves repository names unknown, not the engine
            logger.warning("could not list the voices of %s: %s", self.settings.dsm_voice_repo, exc)
            self._repo_voices = frozenset()
        finally:
            self._repo_listed.set()

    def _repo_voice_path(self, voice: str, valid: list[str]) -> Path:
        """A repository voice's local file: an unknown name is refused at once, a new one fetched once."""
        if not self._repo_listed.wait(timeout=VOICE_LIST_WAIT_SECONDS):
            raise ModelDownloadError(f"the voice list of {self.settings.dsm_voice_repo} is still being read; "
                                     "try again shortly")
        if voice not in (self._repo_voices or ()):
            raise UnknownVoiceError(voice, valid)
        with self._fetch_lock:
            future = self._fetches.get(voice)
            if future is None or (future.done() and future.exception() is not None):
                tts = self._model
                future = self._fetcher.submit(
                    download, self.settings.dsm_voice_repo, f"voice {voice!r}",
                    lambda: Path(tts.get_voice_path(voice)), "voice")
                self._fetches[voice] = future
        try:
            return future.result(timeout=VOICE_FETCH_SECONDS)
        except concurrent.futures.TimeoutError:
            raise ModelDownloadError(f"voice {voice!r} is still downloading; try again shortly") from None

    def _attributes(self, voice_path: Path):
        return self._model.make_condition_attributes([voice_path], cfg_coef=self._cfg_condition)

    def _cross_source(self, voice_path: Path):
        with self._cross_lock:
            if voice_path not in self._cross_cache:
                with self._torch.no_grad():
                    self._cross_cache[voice_path] = self._cross_from(self._attributes(voice_path))
            return self._cross_cache[voice_path]

    def _cross_from(self, attributes):
        """The cross-attention source (speaker conditioning) for one request's attributes."""
        lm = self._model.lm
        cross = lm.fuser.get_cross(lm.condition_provider.prepare_and_provide([attributes]))
        return cross.to(device=self._device, dtype=lm.dtype)

    def _embedding_cross(self, embedding):
        """Cross-attention source for a raw embedding, laid out as moshi's make_condition_attributes does."""
        from moshi.conditioners import ConditionAttributes, TensorCondition

        torch = self._torch
        tts = self._model
        emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32))
        voice = torch.zeros(1, tts.max_speakers, emb.shape[2], emb.shape[1])
        mask = torch.zeros(1, tts.max_speakers, emb.shape[2], dtype=torch.bool)
        voice[:, 0] = emb.transpose(1, 2)
        mask[:, 0] = True
        text = {"control": "ok", "cfg": None if self._cfg_condition is None else format(self._cfg_condition, ".1f")}
        return self._cross_from(ConditionAttributes(text=text, tensor={"speaker_wavs": TensorCondition(
            voice.view(1, -1, voice.shape[-1]), mask.view(1, -1))}))

    # -- requests --------------------------------------------------------------------------
    def prepare(self, request: SynthesisRequest) -> None:
        valid, default = self.voices(request.language)
        name = request.voice or default
        if request.voice_embedding is not None:
            self._check_embedding(request.voice_embedding)
            path, name = None, "custom-embedding"
        elif request.voice is None or request.voice == default:
            path = self._default_voice_path
        elif request.voice in self._custom_voices:
            path = self._custom_voices[request.voice]
        elif self.looks_like_repo_voice(request.voice):
            path = self._repo_voice_path(request.voice, valid)
        else:
            raise UnknownVoiceError(request.voice, valid)
        cross = None
        if self._model.multi_speaker:
            with self._torch.no_grad():
                cross = self._cross_source(path) if path is not None \
                    else self._embedding_cross(request.voice_embedding)
        prepared = DsmPrepared(entries=[], voice_path=path, voice_name=name, cross=cross)
        request.prepared = prepared
        if request.text.strip():
            prepared.entries = self.prepare_piece(request, request.text) or []
        if not prepared.has_words and not request.streaming_text:
            raise NothingToSayError()

    def prepare_piece(self, request: SynthesisRequest, text: str) -> list | None:
        """moshi's script entries for a piece of text; only the very first words get the speaker token."""
        from moshi.models.tts import script_to_entries

        prepared: DsmPrepared = request.prepared
        tts = self._model
        entries = script_to_entries(tts.tokenizer, tts.machine.token_ids, tts.mimi.frame_rate,
                                    [normalize_breaks(text)],
                                    multi_speaker=not prepared.has_words and tts.multi_speaker,
                                    padding_between=self.settings.dsm_padding_between)
        prepared.has_words = prepared.has_words or any(entry.tokens for entry in entries)
        return entries or None

    def _check_embedding(self, embedding) -> None:
        provider = self._model.lm.condition_provider
        conditioner = provider.conditioners["speaker_wavs"] \
            if provider is not None and "speaker_wavs" in provider.conditioners else None
        if conditioner is None:
            raise RequestError("this model takes no voice embeddings")
        shape = tuple(np.shape(embedding))
        if len(shape) != 3 or shape[0] != 1 or shape[1] != conditioner.dim or not 0 < shape[2] <= 1000:
            raise RequestError(f"a voice embedding must have shape [1, {conditioner.dim}, frames], got {list(shape)}")
        if not np.all(np.isfinite(embedding)):
            raise RequestError("a voice embedding must hold finite numbers")

    def knows_voice(self, language: str, voice: str) -> bool:
        return super().knows_voice(language, voice) or self.looks_like_repo_voice(voice)

    def sampling(self) -> dict:
        return {"temperature": self.settings.dsm_temperature, "n_q": self.settings.dsm_n_q,
                "cfg": self.settings.dsm_cfg_coef}

    @staticmethod
    def looks_like_repo_voice(voice: str) -> bool:
        """Names in kyutai/tts-voices look like 'expresso/ex03-ex01_happy_001_channel1_334s.wav'."""
        parts = voice.split("/")
        return (len(parts) >= 2 and voice.endswith(".wav") and ".." not in parts
                and all(p and not p.startswith(".") for p in parts))

    def admit(self, job) -> None:
        slot = next(s for s in self._slots if s.job is None)
        prepared: DsmPrepared = job.request.prepared
        tts = self._model
        slot.job = job
        slot.state = tts.machine.new_state(prepared.entries)
        slot.offset = 0
        slot.words_seen = 0
        slot.text_complete = not job.request.streaming_text
        if tts.multi_speaker:
            with self._torch.no_grad():
                self._set_slot_voice(slot.index, prepared.cross)
        self._pending_resets.append(slot.index)

    def _set_slot_voice(self, index: int, cross) -> None:
        """Write the voice's cross-attention keys and values into one slot of the batch."""
        rows = self._torch.tensor([index], device=self._device)
        for attention in self._cross_attentions:
            internals.set_slot_cross(attention, rows, cross)

    def release(self, job) -> None:
        for slot in self._slots:
            if slot.job is job:
                slot.job = None
                slot.state = None

    def active_jobs(self) -> list:
        return [slot.job for slot in self._slots if slot.job is not None]

    # -- generation ------------------------------------------------------------------------
    def _on_text_logits_hook(self, text_logits) -> None:
        if self._model.padding_bonus:
            text_logits[..., self._model.machine.token_ids.pad] += self._model.padding_bonus

    def _on_audio_hook(self, audio_tokens) -> None:
        tts = self._model
        offsets = internals.slot_offsets(self._lm_gen)
        delays = self._lm_gen.delays_cuda[1: 1 + tts.lm.dep_q]
        mask = offsets[:, None] < delays + tts.delay_steps
        audio_tokens.masked_fill_(mask, tts.machine.token_ids.zero)

    def _on_text_hook(self, text_tokens) -> None:
        machine = self._model.machine
        tokens = text_tokens.tolist()
        for b, slot in enumerate(self._slots):
            if not self._step_actives[b]:
                continue
            tokens[b], _ = machine.process(slot.offset, slot.state, tokens[b])
        text_tokens[:] = self._torch.tensor(tokens, dtype=self._torch.long, device=text_tokens.device)

    def _slot_ready(self, slot: _Slot) -> bool:
        """A slot may step when its words are all known, or enough are queued for the look-ahead."""
        if slot.job is None:
            return False
        if slot.text_complete:
            return True
        lookahead = self._model.machine.second_stream_ahead
        entries = slot.state.entries
        if not entries:
            return False
        if lookahead == 0 or not entries[0].tokens:
            return True
        return sum(1 for e in entries if e.tokens) >= lookahead + 1

    def step(self) -> list[SlotOutput] | None:
        torch = self._torch
        tts = self._model
        delay_steps = tts.delay_steps
        max_delay = self._lm_gen.max_delay
        if self._pending_resets:
            mask = torch.zeros(self.max_slots, dtype=torch.bool)
            mask[self._pending_resets] = True
            mask = mask.to(self._device)
            self._lm_gen.reset_streaming(reset_mask=mask)
            tts.mimi.reset_streaming(reset_mask=mask)
            self._pending_resets.clear()

        for slot in self._slots:
            if slot.job is not None and not slot.text_complete:
                for entries in slot.job.take_text():
                    if entries is None:
                        slot.text_complete = True
                    else:  # prepared by the requester's thread with prepare_piece
                        slot.state.entries.extend(entries)
        actives = [self._slot_ready(slot) for slot in self._slots]
        if not any(actives):
            return None
        decoding = [a and slot.offset - max_delay >= delay_steps for a, slot in zip(actives, self._slots)]
        # While every active slot is still in the text-only lead-in, skip the depformer.
        text_only = not any(decoding) and all(slot.offset < delay_steps
                                              for a, slot in zip(actives, self._slots) if a)
        self._step_actives = actives
        with torch.no_grad(), self._compile_context():
            self._lm_gen.set_exec_mask(torch.tensor(actives, dtype=torch.bool))
            tts.mimi.set_exec_mask(torch.tensor(decoding, dtype=torch.bool))
            frame = self._lm_gen.step(self._input_tokens,
                                      depformer_replace_tokens=self._no_depformer if text_only else None)
            pcm = None
            if any(decoding):
                pcm = tts.mimi.decode(frame[:, 1:].clamp(min=0)).clamp(-1, 1)[:, 0].float().cpu().numpy()

        outputs = []
        for b, slot in enumerate(self._slots):
            if not actives[b]:
                continue
            slot.offset += 1
            out = SlotOutput(slot.job)
            transcript = slot.state.transcript
            while slot.words_seen < len(transcript):
                word, text_step = transcript[slot.words_seen]
                out.words.append((word, text_step / self.frame_rate))
                slot.words_seen += 1
            if decoding[b] and pcm is not None:
                out.audio = np.ascontiguousarray(pcm[b])
            end_step = slot.state.end_step
            if end_step is not None and slot.offset >= end_step + delay_steps + tts.final_padding + max_delay:
                out.done = True
                self.release(slot.job)
            outputs.append(out)
        return outputs


@contextlib.contextmanager
def _no_compile():
    from moshi.utils.compile import no_compile
    with no_compile():
        yield
