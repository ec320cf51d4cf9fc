"""The batched frame loop: one step of the flow model and the decoder for every row at once.

Each request is a row of one batch whose attention caches grow at their own length (`RowCaches`);
a step rotates each row at its own offset, runs the flow model's sampler once for all rows and
decodes the new latents in one decoder call. Every pocket-tts name used here is listed in
`internals.INTERNALS` and checked at load; tests/unit/test_pocket_internals.py reads this file and
internals.py alike and fails on a reach-in the list lacks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from . import decoder as gemm
from .internals import _attentions, _decoder_side, _stateful

if TYPE_CHECKING:

    from pocket_tts import TTSModel
    from pocket_tts.models.flow_lm import FlowLMModel
    from pocket_tts.models.mimi import MimiModel
    from pocket_tts.modules.attention import StreamingMultiheadAttention, _LinearKVCacheBackend
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d
    from pocket_tts.modules.rope import RotaryEmbedding
    from pocket_tts.modules.seanet import SEANetDecoder, SEANetResnetBlock
    from pocket_tts.modules.stateful_module import StatefulModule
    from pocket_tts.modules.transformer import ProjectedTransformer, StreamingTransformer, StreamingTransformerLayer


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
    seanet: object = None  # the SEANet decoder as matrix products (`decoder.SeanetGemm`), built on first use
    seanet_layers: list | None = None  # its layers as plain tensors; None: the package's own decoder runs


def streaming_modules(model: TTSModel) -> StreamingModules:
    from pocket_tts.modules.attention import StreamingMultiheadAttention

    flow: FlowLMModel = model.flow_lm
    mimi: MimiModel = model.mimi
    decoder_side = _decoder_side(mimi)
    return StreamingModules(
        flow_modules=_stateful(flow), mimi_modules=decoder_side,
        mimi_conv=[name for name, module in decoder_side if not isinstance(module, StreamingMultiheadAttention)],
        mimi_fresh={name: _fresh_state(module) for name, module in decoder_side},
        flow_rows=RowCaches(_attentions(_stateful(flow))), mimi_rows=RowCaches(_attentions(decoder_side)),
        seanet_layers=seanet_layers(mimi))


def seanet_layers(mimi: MimiModel) -> list | None:
    """Mimi's SEANet decoder as plain layers (`decoder.Conv`, `ConvTranspose`, `Elu`, `Residual`),
    their weights shared with the package's modules; None where a layer has no such form (the
    package's own decoder then runs)."""
    import torch
    from pocket_tts.modules.conv import StreamingConv1d, StreamingConvTranspose1d
    from pocket_tts.modules.seanet import SEANetDecoder, SEANetResnetBlock


    names = {id(module): name for name, module in _decoder_side(mimi)}
    seanet: SEANetDecoder = mimi.decoder

    def plain(module):
        conv: StreamingConv1d
        convtr: StreamingConvTranspose1d
        block: SEANetResnetBlock
        if isinstance(module, torch.nn.ELU):
            return gemm.Elu(float(module.alpha))
        if isinstance(module, StreamingConv1d):
            conv = module
            inner = conv.conv
            if inner.stride[0] != 1 or inner.groups != 1 or conv.pad_mode != "constant":
                return None
            return gemm.Conv(names[id(conv)], inner.weight, inner.bias, inner.dilation[0])
        if isinstance(module, StreamingConvTranspose1d):
            convtr = module
            inner = convtr.convtr
            if inner.groups != 1 or inner.kernel_size[0] != 2 * inner.stride[0]:
                return None
            return gemm.ConvTranspose(names[id(convtr)], inner.weight, inner.bias, inner.stride[0])
        if isinstance(module, SEANetResnetBlock):
            block = module
            inner = [plain(layer) for layer in block.block]
            return None if None in inner else gemm.Residual(inner)
        return None

    layers = [plain(module) for module in seanet.model]
    return None if None in layers else layers


def _fresh_state(module: StatefulModule) -> dict:
    return module.init_state(1, sequence_length=0)


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
    """Run Mimi's decoder in `dtype` (frame loop only: `decode_rows` casts its input and the rows'
    convolution states; the package's own generator would not).

    "bfloat16": the SEANet decoder's weights and activations. "int8": the decoder transformer's
    linear layers with int8 weights (one scale per output channel) and activations quantized as
    they come (one scale per call, as pocket-tts quantizes its flow model), the SEANet decoder's
    convolutions left in float32: int8 activations there put hiss in the pauses.
    """
    import torch

    mimi: MimiModel = model.mimi
    if dtype == "int8":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if torch.backends.quantized.engine == "none":
            import platform

            torch.backends.quantized.engine = "qnnpack" if platform.machine() in ("arm64", "aarch64") else "fbgemm"
        quantize_dynamic(mimi.decoder_transformer, {torch.nn.Linear: per_channel_dynamic_qconfig},
                         dtype=torch.qint8, inplace=True)
        return
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
    row's own cache, as in `flow_step`; the SEANet decoder runs as matrix products over
    channels-last rows (`decoder.SeanetGemm`) where `streaming.seanet_layers` has its layers, as
    the package's modules otherwise. Each row's state in `states` is advanced.
    """

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
    emb = projected.output_projs[0](emb)
    if streaming.seanet_layers is not None:
        audio = _seanet(streaming, decoder_dtype)(emb, stacked).float()
    else:
        audio = decoder(emb.transpose(1, 2).to(decoder_dtype), stacked).float()
    steps = steps_per_latent(mimi) * latents.shape[1]
    for index, state in enumerate(states):
        for name, module_state in stacked.items():
            for key, value in module_state.items():
                state[name][key] = value[index:index + 1]
        _advance(streaming.mimi_modules, state, steps)
    return [audio[index:index + 1] for index in range(len(states))]


def _seanet(streaming: StreamingModules, dtype):
    """The matrix-product decoder in the package decoder's number format, built once per format."""
    if streaming.seanet is None or streaming.seanet.dtype != dtype:
        streaming.seanet = gemm.SeanetGemm(streaming.seanet_layers, dtype)
    return streaming.seanet


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
