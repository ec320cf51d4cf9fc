"""Every use of pocket-tts beyond its public API, in one place, listed, and checked at load.

The Pocket engine (`engines/pocket.py`) drives the package's modules itself, one frame per step
for a batch of requests, which the public API (`TTSModel.load_model`, `generate_audio`,
`generate_audio_stream`, `get_state_for_audio_prompt`) cannot do. Whatever it needs beyond that
API is reached through the small functions here, and each such name is listed below with why.
`check_installed` resolves the list against the installed package and a loaded model, so that a
pocket-tts that moved something fails at load naming it, rather than mid-request;
`scripts/check_pocket_upgrade.py` runs the same check, and compares audio sample for sample,
against a newer release before the pin in requirements.txt moves.

How a name is written, and how it is resolved:
    "module:name"                  a module attribute (function, class, constant): import, getattr
    "module:Class.name"            a class attribute or method, possibly inherited
    "module:Class().name"          an attribute set by the constructor: looked up on every
                                   instance of Class in a loaded model
    "module:Class().init_state()[key]"  a streaming-state layout, checked on a loaded model

In the functions below, package objects are always held in names annotated with their class,
one attribute deep, so that tests/unit/test_pocket_internals.py can read every reach-in from the
source and compare it with the list.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

if TYPE_CHECKING:
    import threading

    from pocket_tts import TTSModel
    from pocket_tts.models.flow_lm import FlowLMModel
    from pocket_tts.models.mimi import MimiModel
    from pocket_tts.modules.attention import StreamingMultiheadAttention, _LinearKVCacheBackend
    from pocket_tts.modules.rope import RotaryEmbedding
    from pocket_tts.modules.stateful_module import StatefulModule
    from pocket_tts.modules.text_conditioner import LUTConditioner
    from pocket_tts.modules.transformer import ProjectedTransformer, StreamingTransformer, StreamingTransformerLayer

# The release the frame loop was compared against, sample for sample (tests/protocols/test_pocket_batching.py).
VERIFIED_VERSION = "4.0.1"

# The package's documented API (`pocket_tts/__init__.py`): free to use anywhere.
PUBLIC = (
    "pocket_tts:TTSModel", "pocket_tts:export_model_state", "pocket_tts:TTSModel.load_model",
    "pocket_tts:TTSModel.generate_audio", "pocket_tts:TTSModel.generate_audio_stream",
    "pocket_tts:TTSModel.get_state_for_audio_prompt", "pocket_tts:TTSModel.device",
    "pocket_tts:TTSModel.sample_rate",
)

# Needed whichever way audio is generated: text preparation, voices, loading, the per-sentence path.
SERVING: dict[str, str] = {
    "pocket_tts.default_parameters:MAX_TOKEN_PER_CHUNK":
        "the longest chunk in tokens, to split text as generate_audio does",
    "pocket_tts.default_parameters:DEFAULT_VOICE_FOR_LANGUAGE": "the named voice of each released language model",
    "pocket_tts.default_parameters:DEFAULT_VOICE_FALLBACK": "the named voice of a language without one of its own",
    "pocket_tts.models.text_chunking:split_into_best_sentences":
        "the package's chunking, applied before a request is admitted",
    "pocket_tts.models.text_chunking:prepare_text_prompt":
        "the package's text rules and frames-after-end guess, per chunk",
    "pocket_tts:TTSModel().pad_with_spaces_for_short_inputs": "a text rule of the model's config",
    "pocket_tts:TTSModel().remove_semicolons": "a text rule of the model's config",
    "pocket_tts:TTSModel().append_terminal_punctuation": "a text rule of the model's config",
    "pocket_tts:TTSModel().capitalize_first_letter": "a text rule of the model's config",
    "pocket_tts:TTSModel().replace_characters": "a text rule of the model's config",
    "pocket_tts:TTSModel().model_recommended_frames_after_eos":
        "frames spoken after the end flag, where the config sets it",
    "pocket_tts:TTSModel().config":
        "the config it loaded: its weights_path names the checkpoint, whose word heads may be known",
    "pocket_tts:TTSModel().flow_lm": "the flow model: its tokenizer, and every step of the frame loop",
    "pocket_tts:TTSModel().mimi":
        "the Mimi codec: its encoder is dropped after the voices, its decoder runs the frames",
    "pocket_tts:TTSModel._generate_audio_stream_short_text": "one prepared chunk through the package's own generator",
    "pocket_tts.models.flow_lm:FlowLMModel": "the flow model's class, to hold it by type",
    "pocket_tts.models.flow_lm:FlowLMModel().conditioner": "the text conditioner: tokenizer and token embeddings",
    "pocket_tts.modules.text_conditioner:LUTConditioner": "the conditioner's class, to hold it by type",
    "pocket_tts.modules.text_conditioner:LUTConditioner().tokenizer": "the tokenizer the chunking counts tokens with",
    "pocket_tts.modules.text_conditioner:LUTConditioner.prepare":
        "a prompt's tokens, counted and kept with the request",
    "pocket_tts.models.mimi:MimiModel": "the codec's class, to hold it by type",
    "pocket_tts:TTSModel().has_voice_cloning": "whether the loaded weights can make a voice from a recording",
    "pocket_tts.models.mimi:MimiModel().encoder": "dropped once every voice is encoded (a third of Mimi's weights)",
    "pocket_tts.models.mimi:MimiModel().encoder_transformer": "dropped with the encoder",
    "pocket_tts.models.mimi:MimiModel().downsample": "dropped with the encoder",
}

# Needed by the frame loop only: without them the engine generates a sentence per step instead.
FRAME_LOOP: dict[str, str] = {
    "pocket_tts:TTSModel._estimate_max_gen_len": "a chunk's frame limit, as TTSModel._generate sets it",
    "pocket_tts:TTSModel._flow_lm_current_end": "where a voice state's positions end, to size a request's caches",
    "pocket_tts:TTSModel._MIN_FRAMES_BEFORE_EOS": "frames during which the end flag is ignored",
    "pocket_tts:TTSModel().temp": "sampling temperature: the noise's variance",
    "pocket_tts:TTSModel().noise_clamp": "the bound of the truncated noise, if any",
    "pocket_tts:TTSModel().eos_threshold": "the end flag's threshold on its logit",
    "pocket_tts:TTSModel().sampler_decode_steps": "steps of the flow decoder",
    "pocket_tts:TTSModel().max_decoder_frames_per_call":
        "one frame per Mimi call: the package's deterministic setting, compared against",
    "pocket_tts.models.flow_lm:FlowLMModel().ldim": "the latent width",
    "pocket_tts.models.flow_lm:FlowLMModel().dtype": "the latents' dtype",
    "pocket_tts.models.flow_lm:FlowLMModel().bos_emb": "the latent standing for NaN (the start) in the input",
    "pocket_tts.models.flow_lm:FlowLMModel().input_linear": "latents into the transformer's width, all rows at once",
    "pocket_tts.models.flow_lm:FlowLMModel().transformer": "its layers, run with per-row attention",
    "pocket_tts.models.flow_lm:FlowLMModel().out_norm": "the transformer output's norm",
    "pocket_tts.models.flow_lm:FlowLMModel().z_proj": "the projection after the norm, where the config has one",
    "pocket_tts.models.flow_lm:FlowLMModel().out_eos": "the end-of-speech logit",
    "pocket_tts.models.flow_lm:FlowLMModel().flow_net": "the flow head, conditioned on the transformer output",
    "pocket_tts.models.flow_lm:FlowLMModel().flow_type": "which flow decoder samples the latent",
    "pocket_tts.models.flow_lm:FlowLMModel().emb_std": "latent scale, undone before Mimi decodes",
    "pocket_tts.models.flow_lm:FlowLMModel().emb_mean": "latent offset, undone before Mimi decodes",
    "pocket_tts.models.flow_lm:lsd_decode": "the flow decoder for flow_type 'lsd'",
    "pocket_tts.models.flow_lm:ot_decode": "the flow decoder for flow_type 'flow_matching'",
    "pocket_tts.models.flow_lm:drifting_decode": "the flow decoder for flow_type 'drifting'",
    "pocket_tts.models.flow_lm:pointwise_decode": "the flow decoder for flow_type 'pointwise'",
    "pocket_tts.models.mimi:MimiModel().quantizer": "latents into Mimi's decoder space",
    "pocket_tts.models.mimi:MimiModel._to_encoder_framerate": "frames up to Mimi's inner rate, rows stacked",
    "pocket_tts.models.mimi:MimiModel().decoder_transformer": "Mimi's decoder transformer, run with per-row attention",
    "pocket_tts.models.mimi:MimiModel().decoder": "the SEANet decoder, rows stacked, its number format set",
    "pocket_tts.models.mimi:MimiModel().upsample": "its streaming convolution's state is part of a request's",
    "pocket_tts.models.mimi:MimiModel().frame_rate": "latent frames per second",
    "pocket_tts.models.mimi:MimiModel().encoder_frame_rate": "Mimi's inner steps per second",
    "pocket_tts.modules.transformer:ProjectedTransformer": "Mimi's decoder transformer's class, to hold it by type",
    "pocket_tts.modules.transformer:ProjectedTransformer().input_proj": "its input projection, if any",
    "pocket_tts.modules.transformer:ProjectedTransformer().transformer": "its layers, run with per-row attention",
    "pocket_tts.modules.transformer:ProjectedTransformer().output_projs": "its first output projection",
    "pocket_tts.modules.transformer:StreamingTransformer": "a transformer's class, to hold it by type",
    "pocket_tts.modules.transformer:StreamingTransformer().layers":
        "run one by one, as StreamingTransformer.forward does",
    "pocket_tts.modules.transformer:StreamingTransformerLayer": "a layer's class, to hold it by type",
    "pocket_tts.modules.transformer:StreamingTransformerLayer().self_attn": "attention, run per row",
    "pocket_tts.modules.transformer:StreamingTransformerLayer().norm1": "the norm before attention",
    "pocket_tts.modules.transformer:StreamingTransformerLayer().layer_scale_1": "the scale of attention's update",
    "pocket_tts.modules.transformer:StreamingTransformerLayer._ff_block": "the feed-forward block, all rows at once",
    "pocket_tts.modules.attention:StreamingMultiheadAttention":
        "attention's class, to hold it and tell its state from a convolution's",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().in_proj":
        "queries, keys and values for all rows at once",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().out_proj":
        "attention's output projection, all rows at once",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().rope": "rotary positions at a row's own offset",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().dim_per_head": "the head width",
    "pocket_tts.modules.rope:RotaryEmbedding": "rotary positions' class, to hold it by type",
    "pocket_tts.modules.rope:RotaryEmbedding().max_period":
        "the rotation periods, for rows rotated together at their own offsets (`_rope_rows`)",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().attn_dim": "where the queries end in the projection",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().num_heads": "query heads",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().num_kv_heads":
        "key and value heads (grouped-query attention)",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().context": "how far back attention sees",
    "pocket_tts.modules.attention:StreamingMultiheadAttention()._cache_backend":
        "a row's KV cache: its offset, append and read",
    "pocket_tts.modules.attention:_LinearKVCacheBackend": "the KV cache's class, to hold it by type",
    "pocket_tts.modules.attention:_LinearKVCacheBackend.rope_offset": "the position a row's new tokens start at",
    "pocket_tts.modules.attention:_LinearKVCacheBackend.append_and_get":
        "a row's keys and values written, the cache read back",
    "pocket_tts.modules.attention:_build_attention_mask": "the causal mask at a row's own positions",
    "pocket_tts.modules.stateful_module:StatefulModule": "which modules keep streaming state",
    "pocket_tts.modules.stateful_module:StatefulModule.init_state":
        "Mimi's fresh decoder state, copied for each request",
    "pocket_tts.modules.stateful_module:StatefulModule.increment_step": "a row's state advanced by its own positions",
    "pocket_tts.modules.stateful_module:StatefulModule.get_state": "a module's own part of a row's state",
    "pocket_tts.modules.stateful_module:StatefulModule()._module_absolute_name":
        "a state's keys are module names within flow_lm and mimi",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().init_state()['cache']":
        "[2, batch, positions, heads, dim]: each request's copy gets room for its positions",
    "pocket_tts.modules.stateful_module:StatefulModule().init_state()[*]":
        "Mimi's decoder convolution states are batch-first: rows are stacked on dim 0",
}

INTERNALS: dict[str, str] = {**SERVING, **FRAME_LOOP}

# How the engine calls what it calls with more than one argument: the leading parameters it passes
# by position, in order, then after `*` those it passes by keyword.
SIGNATURES: dict[str, str] = {
    "pocket_tts.models.text_chunking:split_into_best_sentences": (
        "(tokenizer, text_to_generate, max_tokens, pad_with_spaces_for_short_inputs, *, remove_semicolons, "
        "append_terminal_punctuation, capitalize_first_letter, replace_characters)"),
    "pocket_tts.models.text_chunking:prepare_text_prompt": (
        "(text, *, pad_with_spaces_for_short_inputs, remove_semicolons, append_terminal_punctuation, "
        "capitalize_first_letter, replace_characters)"),
    "pocket_tts:TTSModel._generate_audio_stream_short_text": (
        "(*, model_state, text_to_generate, frames_after_eos, copy_state, stop)"),
    "pocket_tts:TTSModel._estimate_max_gen_len": "(token_count)",
    "pocket_tts:TTSModel._flow_lm_current_end": "(model_state)",
    "pocket_tts.models.flow_lm:lsd_decode": "(v_t, x_0, num_steps)",
    "pocket_tts.models.flow_lm:ot_decode": "(v_t, x_0, num_steps)",
    "pocket_tts.models.flow_lm:drifting_decode": "(v_t, x_0, num_steps)",
    "pocket_tts.models.flow_lm:pointwise_decode": "(v_t, x_0, num_steps)",
    "pocket_tts.models.flow_lm:FlowLMModel().flow_net": "(c)",
    "pocket_tts.models.mimi:MimiModel._to_encoder_framerate": "(x, mimi_state)",
    "pocket_tts.models.mimi:MimiModel().decoder": "(z, model_state)",
    "pocket_tts.modules.attention:StreamingMultiheadAttention().rope": "(q, k, *, offset)",
    "pocket_tts.modules.attention:_LinearKVCacheBackend.rope_offset": "(state, batch_size, device)",
    "pocket_tts.modules.attention:_LinearKVCacheBackend.append_and_get": "(k, v, state)",
    "pocket_tts.modules.attention:_build_attention_mask": "(pos_q, pos_k, context)",
    "pocket_tts.modules.stateful_module:StatefulModule.init_state": "(batch_size, *, sequence_length)",
    "pocket_tts.modules.stateful_module:StatefulModule.increment_step": "(state, increment)",
    "pocket_tts.modules.stateful_module:StatefulModule.get_state": "(model_state)",
}

# Each `flow_type` a config may name, and the package's decoder for it (as in FlowLMModel.forward).
FLOW_DECODERS = {"lsd": "lsd_decode", "flow_matching": "ot_decode", "drifting": "drifting_decode",
                 "pointwise": "pointwise_decode"}


# -- the check ------------------------------------------------------------------------------
class PocketInternalsError(RuntimeError):
    """The installed pocket-tts lacks, or changed, something the Pocket engine uses."""

    def __init__(self, problems: list[tuple[str, str]], version: str | None):
        self.problems = problems
        self.missing = [name for name, _ in problems]
        self.version = version
        details = "; ".join(f"{name} ({why})" for name, why in problems)
        super().__init__(
            f"pocket-tts {version or '(no distribution)'} lacks what the Pocket engine uses: {details}. "
            f"The engine was written against pocket-tts {VERIFIED_VERSION}, which requirements.txt pins; "
            f"scripts/check_pocket_upgrade.py says whether another release still works.")


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("pocket-tts")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_installed(model: object = None, names: Iterable[str] = INTERNALS, *, cached: bool = True) -> None:
    """Resolve `names` against the installed package, and on `model` when given; raise what fails.

    The package's own names are resolved once per process (unless `cached` is off); attributes set
    by constructors and state layouts need a loaded model, and are checked on each one given.
    """
    names = tuple(names)
    problems = list(_package_problems(names) if cached else _package_problems.__wrapped__(names))
    if model is not None:
        problems += _model_problems(model, names)
    if problems:
        raise PocketInternalsError(problems, installed_version())


def frame_loop_problem(model: object) -> str | None:
    """Why the frame loop should not drive `model` (None when it can): version, then internals."""
    version = installed_version()
    if version is None:
        return "pocket-tts is not installed as a distribution"
    if version != VERIFIED_VERSION:
        return f"pocket-tts {version} is installed; the frame loop was verified with {VERIFIED_VERSION}"
    try:
        check_installed(model, FRAME_LOOP)
    except PocketInternalsError as exc:
        return str(exc)
    return None


def _parse(name: str) -> tuple[str, str, str | None]:
    """(module, owner's attribute path, member of its instances or None) of a listed name."""
    module, _, path = name.partition(":")
    owner, instance, member = path.partition("().")
    return module, owner, member if instance else None


def _lookup(module: str, path: str) -> object:
    found = importlib.import_module(module)
    for part in filter(None, path.split(".")):
        found = getattr(found, part)
    return found


@functools.lru_cache(maxsize=None)
def _package_problems(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    problems = []
    for name in names:
        module, owner, member = _parse(name)
        try:
            found = _lookup(module, owner)
        except ImportError:
            problems.append((name, f"no module {module}"))
            continue
        except AttributeError:
            problems.append((name, "missing" if member is None else f"no {owner}"))
            continue
        if member is None and name in SIGNATURES:
            why = _signature_problem(found, SIGNATURES[name])
            if why:
                problems.append((name, why))
    return tuple(problems)


def _signature_problem(function: object, called_as: str) -> str | None:
    """Whether `function` takes the arguments the way the engine passes them (`called_as`)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return "its signature cannot be read"
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    positional, _, keywords = called_as.strip("()").partition("*")
    positional = [p.strip() for p in positional.split(",") if p.strip()]
    keywords = [k.strip() for k in keywords.split(",") if k.strip()]
    kinds = inspect.Parameter
    ordered = [p.name for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    by_keyword = {p.name for p in parameters if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
    shown = f"takes ({', '.join(str(p) for p in parameters)}), called as {called_as}"
    if ordered[:len(positional)] != positional:
        return shown
    if any(keyword not in by_keyword for keyword in keywords):
        return shown
    required = [p.name for p in parameters
                if p.default is p.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)]
    if any(name not in positional and name not in keywords for name in required):
        return shown
    return None


def _instances(model: object, cls: type) -> list:
    modules = getattr(model, "modules", None)
    found = list(modules()) if callable(modules) else [model]
    return [module for module in found if isinstance(module, cls)]


def _model_problems(model: object, names: tuple[str, ...]) -> list[tuple[str, str]]:
    problems = []
    for name in names:
        module, owner, member = _parse(name)
        if member is None:
            continue
        try:
            cls = _lookup(module, owner)
        except (ImportError, AttributeError):
            continue  # reported with the package's names
        instances = _instances(model, cls)
        if not instances:
            problems.append((name, f"no {owner} in the model"))
            continue
        if "(" not in member:
            lacking = [instance for instance in instances if not hasattr(instance, member)]
            if lacking:
                problems.append((name, "missing"))
                continue
            if name in SIGNATURES:
                value = getattr(instances[0], member)
                why = _signature_problem(getattr(type(value), "forward", value), SIGNATURES[name])
                if why:
                    problems.append((name, why))
                    continue
        if name in _MODEL_CHECKS:
            try:
                why = _MODEL_CHECKS[name](model)
            except Exception as exc:  # what the check reads is itself gone or changed
                why = f"cannot be checked: {exc!r}"
            if why:
                problems.append((name, why))
    return problems


def _flow_type_problem(model: TTSModel) -> str | None:
    flow: FlowLMModel = model.flow_lm
    if flow.flow_type not in FLOW_DECODERS:
        return f"no decoder here for flow_type {flow.flow_type!r}"
    return None


def _state_names_problem(model: TTSModel) -> str | None:
    flow: FlowLMModel = model.flow_lm
    mimi: MimiModel = model.mimi
    module: StatefulModule
    for top in (flow, mimi):
        for name, module in _stateful(top):
            if module._module_absolute_name != name:
                return f"{name!r} keeps its state under {module._module_absolute_name!r}"
    return None


def _cache_layout_problem(model: TTSModel) -> str | None:
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    attention: StreamingMultiheadAttention
    for attention in _instances(model, StreamingMultiheadAttention):
        cache = attention.init_state(2, sequence_length=3).get("cache")
        if cache is None or cache.dim() < 3 or tuple(cache.shape[1:3]) != (2, 3):
            return "a KV cache is no longer laid out [2, batch, positions, ...]"
    return None


def _batch_first_problem(model: TTSModel) -> str | None:
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    mimi: MimiModel = model.mimi
    module: StatefulModule
    for name, module in _decoder_side(mimi):
        if isinstance(module, StreamingMultiheadAttention):
            continue
        for key, value in module.init_state(2, sequence_length=0).items():
            if tuple(value.shape[:1]) != (2,):
                return f"{name}[{key!r}] is not batch-first"
    return None


_MODEL_CHECKS = {
    "pocket_tts.models.flow_lm:FlowLMModel().flow_type": _flow_type_problem,
    "pocket_tts.modules.stateful_module:StatefulModule()._module_absolute_name": _state_names_problem,
    "pocket_tts.modules.attention:StreamingMultiheadAttention().init_state()['cache']": _cache_layout_problem,
    "pocket_tts.modules.stateful_module:StatefulModule().init_state()[*]": _batch_first_problem,
}


# -- text and voices ------------------------------------------------------------------------
def predefined_voice(package_language: str) -> str:
    """The package's named voice for a language of its released weights."""
    from pocket_tts.default_parameters import DEFAULT_VOICE_FALLBACK, DEFAULT_VOICE_FOR_LANGUAGE

    return DEFAULT_VOICE_FOR_LANGUAGE.get(package_language, DEFAULT_VOICE_FALLBACK)


def text_chunks(model: TTSModel, text: str) -> list[str]:
    """`text` in the chunks `generate_audio_stream` would speak one by one; ValueError if none is left."""
    from pocket_tts.default_parameters import MAX_TOKEN_PER_CHUNK
    from pocket_tts.models.text_chunking import split_into_best_sentences

    flow: FlowLMModel = model.flow_lm
    conditioner: LUTConditioner = flow.conditioner
    return split_into_best_sentences(
        conditioner.tokenizer, text, MAX_TOKEN_PER_CHUNK, model.pad_with_spaces_for_short_inputs,
        remove_semicolons=model.remove_semicolons, append_terminal_punctuation=model.append_terminal_punctuation,
        capitalize_first_letter=model.capitalize_first_letter, replace_characters=model.replace_characters)


def text_prompt(model: TTSModel, chunk: str) -> tuple[str, int]:
    """A chunk as the model is prompted with it, and the frames spoken after its end flag."""
    from pocket_tts.models.text_chunking import prepare_text_prompt

    prompt, guess = prepare_text_prompt(
        chunk, pad_with_spaces_for_short_inputs=model.pad_with_spaces_for_short_inputs,
        remove_semicolons=model.remove_semicolons, append_terminal_punctuation=model.append_terminal_punctuation,
        capitalize_first_letter=model.capitalize_first_letter, replace_characters=model.replace_characters)
    after_eos = model.model_recommended_frames_after_eos
    return prompt, after_eos if after_eos is not None else guess + 2  # generate_audio_stream's rule


def prompt_tokens(model: TTSModel, prompt: str) -> list[int]:
    flow: FlowLMModel = model.flow_lm
    conditioner: LUTConditioner = flow.conditioner
    return conditioner.prepare(prompt)[0].tolist()


def clones_voices(model: TTSModel) -> bool:
    """Whether the weights loaded clone voices (Kyutai also serves weights that cannot) and the encoder is there."""
    mimi: MimiModel = model.mimi
    return bool(model.has_voice_cloning) and mimi.encoder is not None


def token_prefixes(model: TTSModel, tokens: list[int]) -> list[str]:
    """The tokenizer's text for each prefix of `tokens`: which characters each token speaks."""
    flow: FlowLMModel = model.flow_lm
    conditioner: LUTConditioner = flow.conditioner
    tokenizer = conditioner.tokenizer  # SentencePieceTokenizer or JsonTokenizer: both decode ids
    return [tokenizer.decode(tokens[:count]) for count in range(1, len(tokens) + 1)]


def attention_shape(model: TTSModel) -> tuple[int, int]:
    """The flow model's layers and query heads per layer: which layer:head pairs exist."""
    flow: FlowLMModel = model.flow_lm
    transformer: StreamingTransformer = flow.transformer
    layer: StreamingTransformerLayer = transformer.layers[0]
    attention: StreamingMultiheadAttention = layer.self_attn
    return len(transformer.layers), attention.num_heads


def weights_path(model: TTSModel) -> str | None:
    """The checkpoint the model was loaded from, as its config names it (hf://...@revision or a file)."""
    config = model.config
    return getattr(config, "weights_path", None)


def drop_voice_encoder(model: TTSModel) -> None:
    """Free the Mimi encoder once every voice is encoded: nothing uses it until the next load."""
    mimi: MimiModel = model.mimi
    mimi.encoder = None
    mimi.encoder_transformer = None
    mimi.downsample = None


def sentence_audio(model: TTSModel, voice_state: dict, text: str, frames_after_eos: int,
                   stop: threading.Event) -> Iterator:
    """One prepared chunk through the package's own generator, on a copy of the voice state."""
    return model._generate_audio_stream_short_text(
        model_state=voice_state, text_to_generate=text, frames_after_eos=frames_after_eos, copy_state=True,
        stop=stop)


# -- the frame loop -------------------------------------------------------------------------
@dataclass
class StreamingModules:
    """The modules whose streaming state a request carries, listed once at load.

    The package's `init_states` / `increment_steps` walk every module on every call, and for Mimi
    include the encoder, which decoding never uses (its caches alone would be tens of MB per request).
    """

    flow_modules: list  # (name, module) for every streaming module of the flow model
    mimi_modules: list  # (name, module) on Mimi's decoder side only
    mimi_conv: list  # the names of those that are convolutions: their states are stacked per batch
    mimi_fresh: dict  # Mimi's decoder state before any frame, caches empty
    flow_rows: RowCaches = None  # every row's flow-model KV caches, as slots of one tensor per layer
    mimi_rows: RowCaches = None  # the same for Mimi's decoder transformer


def streaming_modules(model: TTSModel) -> StreamingModules:
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    flow: FlowLMModel = model.flow_lm
    mimi: MimiModel = model.mimi
    decoder_side = _decoder_side(mimi)
    return StreamingModules(
        flow_modules=_stateful(flow), mimi_modules=decoder_side,
        mimi_conv=[name for name, module in decoder_side if not isinstance(module, StreamingMultiheadAttention)],
        mimi_fresh={name: _fresh_state(module) for name, module in decoder_side},
        flow_rows=RowCaches(_attentions(_stateful(flow))), mimi_rows=RowCaches(_attentions(decoder_side)))


def _attentions(modules: list) -> list:
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    return [(name, module) for name, module in modules if isinstance(module, StreamingMultiheadAttention)]


def _stateful(top: object) -> list:
    """`top`'s streaming modules, by the names their states are kept under."""
    from pocket_tts.modules.stateful_module import StatefulModule

    return [(name, module) for name, module in top.named_modules() if isinstance(module, StatefulModule)]


def _decoder_side(mimi: MimiModel) -> list:
    """Mimi's streaming modules that decoding runs, named within Mimi."""
    parts = {"decoder": mimi.decoder, "decoder_transformer": mimi.decoder_transformer, "upsample": mimi.upsample}
    return [(".".join(filter(None, (part, name))), module)
            for part, top in parts.items() for name, module in _stateful(top)]


def _fresh_state(module: StatefulModule) -> dict:
    return module.init_state(1, sequence_length=0)


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


class RowCaches:
    """Every row's KV caches of one transformer, as slots of one tensor per attention layer.

    Attention per row is exact but costs a dozen small operations per row and layer: at 16 rows
    that was a third of a step. With each row's cache a slot of one tensor, the rows that add the
    same number of positions in a step (all of them, most steps) attend in one call, each masked
    to its own positions, as the package masks a padded batch (`_build_attention_mask`). A row's
    state holds a view of its slot, so the package's own per-row code reads and writes the same
    memory. Free slots keep finite values: a masked position must not be NaN, which would spread
    through the weighted sum.

    A layer that sees only its last `context` positions (Mimi's decoder transformer: 250 steps of
    200 Hz) keeps them in a ring of `context + RING_SPARE` positions, position p at p mod the ring's
    length. The package keeps every position of a request and masks all but the last 250: at 20 s
    into an answer, 4000 positions per row attended for nothing, a third of the decoder's time and
    tens of MB per row. A ring is read only here (`attend`), never by the package's own code.
    """

    RING_SPARE = 64  # positions a row may add in one call beyond its context (four frames of Mimi)

    def __init__(self, modules: list):
        self.names = [name for name, _ in modules]
        self.name_of = {id(module): name for name, module in modules}
        self.rings = {}  # name -> ring length
        attention: StreamingMultiheadAttention
        for name, attention in modules:
            if attention.context is not None:
                self.rings[name] = attention.context + self.RING_SPARE
        self.buffers: dict = {}  # name -> [2, slots, positions, kv heads, dim]
        self.owners: list = []  # the row state in each slot; None when free
        self.lengths: list[int] = []  # the positions each slot's row has room for
        self.slot_of: dict[int, int] = {}  # id(row state) -> slot

    def is_ring(self, attention: StreamingMultiheadAttention) -> bool:
        return self.name_of.get(id(attention)) in self.rings

    def place(self, state: dict, length: int) -> dict:
        """A copy of `state` (a voice's, or a fresh one) whose caches are a free slot with room for
        `length` positions: what `_sized_copy` makes, in a slot."""
        slot = next((index for index, owner in enumerate(self.owners) if owner is None), len(self.owners))
        if slot == len(self.owners):
            self.owners.append(None)
            self.lengths.append(0)
        self.grow(state, slot + 1, length)
        copied = {}
        for name, module_state in state.items():
            copied[name] = {key: value.clone() for key, value in module_state.items()
                            if not (key == "cache" and name in self.buffers)}
            if name in self.buffers:
                buffer = self.buffers[name]
                filled = int(module_state["offset"].view(-1)[0])  # beyond it the package keeps NaN
                ring = self.rings.get(name)
                if ring is None:
                    buffer[:, slot, :filled] = module_state["cache"][:, 0, :filled]
                    copied[name]["cache"] = buffer[:, slot:slot + 1, :length]
                else:
                    kept = range(max(filled - ring + self.RING_SPARE, 0), filled)
                    buffer[:, slot, [p % ring for p in kept]] = module_state["cache"][:, 0, kept.start:kept.stop]
                    copied[name]["cache"] = buffer[:, slot:slot + 1]
        self.owners[slot], self.lengths[slot] = copied, length
        self.slot_of[id(copied)] = slot
        return copied

    def keep(self, states: list[dict]) -> None:
        """Free the slots of every row not in `states`; with none left, the memory goes too."""
        live = {id(state) for state in states}
        for slot, owner in enumerate(self.owners):
            if owner is not None and id(owner) not in live:
                del self.slot_of[id(owner)]
                self.owners[slot] = None
        if not self.slot_of:
            self.buffers, self.owners, self.lengths = {}, [], []

    def holds(self, states: list[dict]) -> bool:
        return all(id(state) in self.slot_of for state in states)

    def grow(self, like: dict, slots: int, length: int) -> None:
        import torch

        for name in self.names:
            want = self.rings.get(name, length)
            old = self.buffers.get(name)
            if old is not None and old.shape[1] >= slots and old.shape[2] >= want:
                continue
            template = like[name]["cache"]
            have_slots, have_length = (old.shape[1], old.shape[2]) if old is not None else (0, 0)
            room = want if name in self.rings else max(want, have_length + have_length // 4)
            size = (2, max(slots, 2 * have_slots), room) + template.shape[3:]
            new = torch.zeros(size, dtype=template.dtype, device=template.device)
            if old is not None:
                new[:, :have_slots, :have_length] = old
            self.buffers[name] = new
            for slot, owner in enumerate(self.owners):
                if owner is not None:
                    owner[name]["cache"] = new[:, slot:slot + 1, :self.lengths[slot]] if name not in self.rings \
                        else new[:, slot:slot + 1]

    def offsets(self, states: list[dict]):
        """Each row's position before this step ([rows]): the same in every layer of a row."""
        import torch

        return torch.cat([state[self.names[0]]["offset"].view(-1)[:1] for state in states])

    def attend(self, attention: StreamingMultiheadAttention, projected, states: list, offsets, listen=None):
        """`_attend` for rows that each add `t` positions ([rows, t, width]), in one call.

        Each row's keys and values are written at its own positions, its queries rotated at them,
        and its attention masked to what it has seen (and `context`), so each row gets what it
        would alone up to the order of float additions. `listen`, when given, sees the rows'
        rotated queries ([rows, heads, t, dim]), every slot's keys ([slots, heads, positions, dim])
        and each row's slot.
        """
        import torch
        from torch.nn import functional as F

        name = self.name_of[id(attention)]
        buffer = self.buffers[name]
        ring = self.rings.get(name)
        rows, t, _ = projected.shape
        if ring is not None and t > self.RING_SPARE:
            # More positions than the ring's spare room: in turns, each seeing the ones before it.
            parts = []
            for begin in range(0, t, self.RING_SPARE):
                parts.append(self.attend(attention, projected[:, begin:begin + self.RING_SPARE], states,
                                         offsets + begin))
            return torch.cat(parts, dim=1)
        d = attention.dim_per_head
        q = projected[..., : attention.attn_dim].view(rows, t, attention.num_heads, d)
        k, v = torch.unbind(projected[..., attention.attn_dim:].view(rows, t, 2, attention.num_kv_heads, d), dim=2)
        rope: RotaryEmbedding = attention.rope
        q, k = _rope_rows(q, k, offsets, rope.max_period)
        slots = torch.tensor([self.slot_of[id(state)] for state in states], dtype=torch.long)
        positions = offsets.view(-1, 1) + torch.arange(t, dtype=torch.long).view(1, -1)
        where = positions if ring is None else positions % ring
        buffer[0, slots.view(-1, 1), where] = k.to(buffer.dtype)
        buffer[1, slots.view(-1, 1), where] = v.to(buffer.dtype)
        used_slots = int(slots.max()) + 1
        used_positions = int(positions.max()) + 1 if ring is None else ring
        keys = buffer[0, :used_slots, :used_positions].transpose(1, 2)
        values = buffer[1, :used_slots, :used_positions].transpose(1, 2)
        if attention.num_kv_heads != attention.num_heads:
            keys = keys.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
            values = values.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
        # Every slot up to the last used one attends (a free slot: at position 0, to no use), so
        # that no row's keys are gathered; only the rows asked for are read back.
        q = q.transpose(1, 2)
        if listen is not None:
            listen(q, keys, slots)
        queries = torch.zeros((used_slots, attention.num_heads, t, d), dtype=q.dtype)
        queries[slots] = q
        query_positions = torch.zeros((used_slots, t), dtype=torch.long)
        query_positions[slots] = positions
        if ring is None:
            key_positions = torch.arange(used_positions, dtype=torch.long).view(1, 1, -1)
        else:
            # The position each ring entry holds now: the latest p <= the row's last with p = entry mod ring
            # (negative: never written). A slot not in this call sees position 0 at entry 0.
            last = torch.zeros(used_slots, dtype=torch.long)
            last[slots] = positions[:, -1]
            entry = torch.arange(ring, dtype=torch.long).view(1, -1)
            key_positions = (last.view(-1, 1) - (last.view(-1, 1) - entry) % ring)[:, None, :]
        delta = query_positions[:, :, None] - key_positions
        mask = (delta >= 0) & (key_positions >= 0)
        if attention.context is not None:
            mask &= delta < attention.context
        x = F.scaled_dot_product_attention(queries, keys, values, mask[:, None], dropout_p=0.0)
        return x[slots].transpose(1, 2).reshape(rows, t, -1)


def _rope_rows(q, k, offsets, max_period: float):
    """The package's `apply_rope` with each row at its own offset (`offsets`: [rows]).

    The same float operations in the same order, so a row's rotation is the package's exactly."""
    import math

    import torch

    rows, t, heads, d = q.shape
    kv_heads = k.shape[2]
    ds = torch.arange(d // 2, dtype=torch.float32)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / d))
    ts = torch.arange(t, dtype=torch.float32).view(1, t) + offsets.view(rows, 1)
    ts = ts.view(rows, t, 1, 1)
    q = q.view(rows, t, heads, d // 2, 2)
    k = k.view(rows, t, kv_heads, d // 2, 2)
    qr, qi = q[..., 0].float(), q[..., 1].float()
    kr, ki = k[..., 0].float(), k[..., 1].float()
    rotr, roti = torch.cos(freqs * ts), torch.sin(freqs * ts)
    qo = torch.stack([(qr * rotr - qi * roti).to(q.dtype), (qr * roti + qi * rotr).to(q.dtype)], dim=-1)
    ko = torch.stack([(kr * rotr - ki * roti).to(k.dtype), (kr * roti + ki * rotr).to(k.dtype)], dim=-1)
    return qo.view(rows, t, heads, d), ko.view(rows, t, kv_heads, d)


def _advance(modules: list, state: dict, steps: int) -> None:
    """The package's `increment_steps` over modules listed once."""
    module: StatefulModule
    for name, module in modules:
        module.increment_step(state[name], steps)


def steps_per_latent(mimi: MimiModel) -> int:
    return int(mimi.encoder_frame_rate / mimi.frame_rate)


class PieceStart(NamedTuple):
    flow_state: dict
    mimi_state: dict
    prompt: object  # the chunk's tokens, [1, n]
    latent: object  # NaN: the package's start of speech
    max_frames: int
    text_at: int = 0  # where the chunk's tokens sit in the flow model's KV cache


def start_piece(model: TTSModel, streaming: StreamingModules, voice_state: dict, tokens: list[int]) -> PieceStart:
    """A fresh copy of the voice state and of Mimi's, sized as `TTSModel._generate` sizes them."""
    import torch

    flow: FlowLMModel = model.flow_lm
    mimi: MimiModel = model.mimi
    prompt = torch.tensor([tokens], dtype=torch.long, device=model.device)
    max_frames = model._estimate_max_gen_len(len(tokens))
    text_at = model._flow_lm_current_end(voice_state)
    flow_state = streaming.flow_rows.place(voice_state, text_at + len(tokens) + max_frames)
    mimi_state = streaming.mimi_rows.place(streaming.mimi_fresh, max_frames * steps_per_latent(mimi))
    latent = torch.full((1, 1, flow.ldim), float("NaN"), device=model.device, dtype=flow.dtype)
    return PieceStart(flow_state, mimi_state, prompt, latent, max_frames, text_at)


def set_decoder_dtype(model: TTSModel, dtype: str) -> None:
    """Run the SEANet decoder's convolutions in `dtype` (frame loop only: `decode_rows` casts its
    input and the rows' convolution states; the package's own generator would not)."""
    import torch

    mimi: MimiModel = model.mimi
    decoder = mimi.decoder
    decoder.to(getattr(torch, dtype))


def keep_rows(streaming: StreamingModules, pieces: list) -> None:
    """Free the cache slots of every piece not in `pieces` (each with `flow_state`, `mimi_state`)."""
    streaming.flow_rows.keep([piece.flow_state for piece in pieces])
    streaming.mimi_rows.keep([piece.mimi_state for piece in pieces])


def min_frames_before_eos(model: TTSModel) -> int:
    return model._MIN_FRAMES_BEFORE_EOS


@functools.cache
def _flow_decoders() -> dict:
    from pocket_tts.models.flow_lm import drifting_decode, lsd_decode, ot_decode, pointwise_decode

    return {"lsd": lsd_decode, "flow_matching": ot_decode, "drifting": drifting_decode,
            "pointwise": pointwise_decode}


def flow_step(model: TTSModel, streaming: StreamingModules, latents: list, prompts: list, states: list,
              heard=None):
    """One step of the flow model for every row in one batch: each row's next latent and end flag.

    The package's `FlowLMModel.forward` for rows laid end to end. `latents[i]` ([1, 1, ldim]) is
    row i's last latent (NaN at its start); `prompts[i]`, when not None, its text's tokens, run
    before the frame in one sequence as `FlowLMModel.forward` takes them. All rows go through the
    linear layers (where the time goes) as one sequence; attention runs per row over the row's
    own KV cache at its own positions, exactly as the package does for one request. `heard`, when
    given (`pocket_alignment.TextAttention`), is handed the chosen heads' queries and keys on the way.
    """
    import numpy as np
    import torch

    flow: FlowLMModel = model.flow_lm
    sequence = torch.cat(latents, dim=0)
    frames = flow.input_linear(torch.where(torch.isnan(sequence), flow.bos_emb, sequence))
    inputs = []
    for index, prompt in enumerate(prompts):
        frame = frames[index:index + 1]
        inputs.append(frame if prompt is None else torch.cat([flow.conditioner(prompt), frame], 1))
    lengths = [part.shape[1] for part in inputs]
    x = _transformer_rows(flow.transformer, torch.cat(inputs, dim=1), states, lengths, streaming.flow_rows, heard)
    for state, length in zip(states, lengths):
        _advance(streaming.flow_modules, state, length)
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
    decode = _flow_decoders()[flow.flow_type]
    next_latents = decode(partial(flow.flow_net, out), noise, model.sampler_decode_steps)
    return next_latents[:, None, :], eos


def decode_rows(model: TTSModel, streaming: StreamingModules, latents, states: list) -> list:
    """Audio ([1, 1, samples]) of each row's frames (`latents`: [rows, frames, ldim]), in one batch.

    The package's `MimiModel.decode_from_latent`, batched: the convolutions' streaming states are
    stacked into one batch and split back after; the decoder transformer attends per row over each
    row's own cache, as in `flow_step`. Each row's state in `states` is advanced.
    """
    import torch

    flow: FlowLMModel = model.flow_lm
    mimi: MimiModel = model.mimi
    projected: ProjectedTransformer = mimi.decoder_transformer
    decoder = mimi.decoder
    decoder_dtype = next(decoder.parameters()).dtype
    stacked = {name: {key: _stack([state[name][key] for state in states],
                                  decoder_dtype if name.startswith("decoder.") else None)
                      for key in states[0][name]}
               for name in streaming.mimi_conv}
    latent = mimi.quantizer((latents * flow.emb_std + flow.emb_mean).transpose(-1, -2))
    emb = mimi._to_encoder_framerate(latent, stacked)
    emb = emb.transpose(1, 2)
    if projected.input_proj is not None:
        emb = projected.input_proj(emb)
    rows, steps_per_row, dim = emb.shape
    emb = _transformer_rows(projected.transformer, emb.reshape(1, rows * steps_per_row, dim), states,
                            [steps_per_row] * rows, streaming.mimi_rows).reshape(rows, steps_per_row, dim)
    emb = projected.output_projs[0](emb).transpose(1, 2)
    audio = decoder(emb.to(decoder_dtype), stacked).float()
    steps = steps_per_latent(mimi) * latents.shape[1]
    for index, state in enumerate(states):
        for name, module_state in stacked.items():
            for key, value in module_state.items():
                state[name][key] = value[index:index + 1]
        _advance(streaming.mimi_modules, state, steps)
    return [audio[index:index + 1] for index in range(len(states))]


def _stack(values: list, dtype=None):
    """Rows' states on dim 0; floating ones in `dtype` when given (the decoder's own)."""
    import torch

    stacked = torch.cat(values, dim=0)
    return stacked.to(dtype) if dtype is not None and stacked.is_floating_point() else stacked


def _transformer_rows(transformer: StreamingTransformer, x, states: list, lengths: list,
                      caches: RowCaches | None = None, heard=None):
    """`StreamingTransformer.forward` for rows laid end to end in `x` ([1, sum(lengths), dim]).

    Row i is `lengths[i]` positions long and has its own streaming state `states[i]`. With
    `caches` holding every row, the rows of the most common length attend in one call. `heard`
    (optional, `pocket_alignment.TextAttention`) is offered each layer's rotated queries and keys.
    """
    import collections

    together: list[int] = []
    rings = caches is not None and bool(caches.rings)  # a ring is read only by `RowCaches.attend`, even alone
    if caches is not None and (len(states) > 1 or rings) and caches.holds(states):
        common = collections.Counter(lengths).most_common(1)[0][0]
        together = [index for index, length in enumerate(lengths) if length == common]
    offsets = caches.offsets([states[index] for index in together]) if len(together) > 1 or together and rings \
        else None
    layer: StreamingTransformerLayer
    for index, layer in enumerate(transformer.layers):
        x = _layer_rows(layer, x, states, lengths, caches, together if offsets is not None else [], offsets,
                        partial(heard.listener, index) if heard is not None else None,
                        partial(heard.rows_listener, index) if heard is not None else None)
    return x


def _layer_rows(layer: StreamingTransformerLayer, x, states: list, lengths: list,
                caches: RowCaches | None = None, together: list[int] = (), offsets=None,
                listener=None, rows_listener=None):
    """`StreamingTransformerLayer.forward`: everything but attention for all rows at once;
    attention in one call for the rows in `together`, alone for each other row. `listener(row)`
    and `rows_listener(rows)` give what hears the chosen heads, alone and together."""
    import torch

    attention: StreamingMultiheadAttention = layer.self_attn
    projected = attention.in_proj(layer.norm1(x))
    if together and len(together) == len(lengths):
        t = lengths[0]
        out = caches.attend(attention, projected.view(len(lengths), t, -1), states, offsets,
                            rows_listener(together) if rows_listener is not None else None)
        attended = out.reshape(1, -1, out.shape[-1])
    else:
        starts = [0]
        for length in lengths:
            starts.append(starts[-1] + length)
        rows: list = [None] * len(lengths)
        if together:
            t = lengths[together[0]]
            index = torch.tensor([starts[i] + step for i in together for step in range(t)], dtype=torch.long)
            out = caches.attend(attention, projected[0, index].view(len(together), t, -1),
                                [states[i] for i in together], offsets,
                                rows_listener(together) if rows_listener is not None else None)
            for position, i in enumerate(together):
                rows[i] = out[position:position + 1]
        for i, (state, length) in enumerate(zip(states, lengths)):
            if rows[i] is None and caches is not None and caches.is_ring(attention):
                rows[i] = caches.attend(attention, projected[:, starts[i]:starts[i] + length], [state],
                                        caches.offsets([state]))
            elif rows[i] is None:
                rows[i] = _attend(attention, projected[:, starts[i]:starts[i] + length], state,
                                  listener(i) if listener is not None else None)
        attended = torch.cat(rows, dim=1)
    update = attention.out_proj(attended)
    x = x.to(update) + layer.layer_scale_1(update)
    return layer._ff_block(x)


def _attend(attention: StreamingMultiheadAttention, projected, state: dict, listen=None):
    """`StreamingMultiheadAttention.forward` after its input projection, for one row and its state.

    `listen`, when given, sees the rotated queries and every cached key ([1, heads, positions, dim]).
    """
    import torch
    from pocket_tts.modules.attention import _build_attention_mask
    from torch.nn import functional as F

    backend: _LinearKVCacheBackend = attention._cache_backend
    b, t, _ = projected.shape
    d = attention.dim_per_head
    q = projected[..., : attention.attn_dim].view(b, t, attention.num_heads, d)
    k, v = torch.unbind(projected[..., attention.attn_dim:].view(b, t, 2, attention.num_kv_heads, d), dim=2)
    own = attention.get_state(state)
    q, k = attention.rope(q, k, offset=backend.rope_offset(own, b, q.device))
    q = q.transpose(1, 2)
    k_attn, v_attn, pos_k, offset = backend.append_and_get(k, v, own)
    if attention.num_kv_heads != attention.num_heads:
        k_attn = k_attn.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
        v_attn = v_attn.repeat_interleave(attention.num_heads // attention.num_kv_heads, dim=1)
    if listen is not None:
        listen(q, k_attn)
    pos_q = offset.view(-1, 1) + torch.arange(t, device=q.device, dtype=torch.long).view(1, -1)
    mask = _build_attention_mask(pos_q, pos_k, attention.context)
    x = F.scaled_dot_product_attention(q, k_attn, v_attn, mask, dropout_p=0.0).transpose(1, 2)
    return x.reshape(b, t, -1)


# -- for comparisons with the package's own audio -------------------------------------------
def set_temperature(model: TTSModel, temperature: float) -> None:
    """Change the sampling temperature after loading (0: no noise, so runs can be compared)."""
    model.temp = temperature


@contextlib.contextmanager
def one_frame_per_decoder_call(model: TTSModel) -> Iterator[None]:
    """The package's deterministic decoding: its decoder thread otherwise decodes whatever is queued."""
    previous = model.max_decoder_frames_per_call
    model.max_decoder_frames_per_call = 1
    try:
        yield
    finally:
        model.max_decoder_frames_per_call = previous
