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
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    import threading

    from pocket_tts import TTSModel
    from pocket_tts.models.flow_lm import FlowLMModel
    from pocket_tts.models.mimi import MimiModel
    from pocket_tts.modules.attention import StreamingMultiheadAttention
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d
    from pocket_tts.modules.stateful_module import StatefulModule
    from pocket_tts.modules.text_conditioner import LUTConditioner
    from pocket_tts.modules.transformer import StreamingTransformer, StreamingTransformerLayer

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
    "pocket_tts.modules.seanet:SEANetDecoder": "the SEANet decoder's class, to hold it by type",
    "pocket_tts.modules.seanet:SEANetDecoder().model":
        "its layers in order, read once into matrix-product form (engines/pocket/decoder.py)",
    "pocket_tts.modules.seanet:SEANetResnetBlock": "a residual block's class, to tell it and hold it by type",
    "pocket_tts.modules.seanet:SEANetResnetBlock().block": "the block's layers, added to its input",
    "pocket_tts.modules.conv:StreamingConv1d": "a streaming convolution's class, to tell it and hold it by type",
    "pocket_tts.modules.conv:StreamingConv1d().conv": "its torch convolution: weights, dilation, stride",
    "pocket_tts.modules.conv:StreamingConv1d().pad_mode":
        "only 'constant' padding has the matrix-product form (the released configs' setting)",
    "pocket_tts.modules.conv:StreamingConvTranspose1d":
        "a streaming transposed convolution's class, to tell it and hold it by type",
    "pocket_tts.modules.conv:StreamingConvTranspose1d().convtr": "its torch transposed convolution: weights, stride",
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
    "pocket_tts.modules.conv:StreamingConv1d().init_state()['previous']":
        "[batch, in, kernel - stride]: the inputs a convolution still needs, read and replaced by "
        "the matrix-product decoder",
    "pocket_tts.modules.conv:StreamingConvTranspose1d().init_state()['partial']":
        "[batch, out, kernel - stride], without the bias: what a transposed convolution carries over",
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


def _conv_state_problem(model: TTSModel) -> str | None:
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d

    conv: StreamingConv1d
    for conv in _instances(model, StreamingConv1d):
        inner = conv.conv
        want = ((inner.kernel_size[0] - 1) * inner.dilation[0] + 1) - inner.stride[0]
        previous = conv.init_state(2, sequence_length=0).get("previous")
        if previous is None or tuple(previous.shape) != (2, inner.in_channels, want):
            return "a convolution's state is no longer [batch, in, kernel - stride] under 'previous'"
    convtr: StreamingConvTranspose1d
    for convtr in _instances(model, StreamingConvTranspose1d):
        inner = convtr.convtr
        partial = convtr.init_state(2, sequence_length=0).get("partial")
        want = (2, inner.out_channels, inner.kernel_size[0] - inner.stride[0])
        if partial is None or tuple(partial.shape) != want:
            return "a transposed convolution's state is no longer [batch, out, kernel - stride] under 'partial'"
    return None


_MODEL_CHECKS = {
    "pocket_tts.models.flow_lm:FlowLMModel().flow_type": _flow_type_problem,
    "pocket_tts.modules.stateful_module:StatefulModule()._module_absolute_name": _state_names_problem,
    "pocket_tts.modules.attention:StreamingMultiheadAttention().init_state()['cache']": _cache_layout_problem,
    "pocket_tts.modules.stateful_module:StatefulModule().init_state()[*]": _batch_first_problem,
    "pocket_tts.modules.conv:StreamingConv1d().init_state()['previous']": _conv_state_problem,
    "pocket_tts.modules.conv:StreamingConvTranspose1d().init_state()['partial']": _conv_state_problem,
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


# -- what a loaded model holds ---------------------------------------------------------------
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
