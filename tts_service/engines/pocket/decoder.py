"""Mimi's SEANet decoder as matrix products over channels-last activations.

The package's modules run the decoder's streaming convolutions through oneDNN, a new input
length almost every call; its transposed convolutions reach 0.55-0.75 of this CPU's float32
matrix-product rate (docs/benchmarks.md). The same arithmetic as plain matrix products over every
row and position at once:

- a transposed convolution of stride s and kernel 2s is two products over the rows laid end to
  end: each input position's first s outputs, then the position before's second s added into
  them in place (the streaming state carries the last position's second half into the next
  call); the 2s outputs are never written whole, which in the last layers were tens of MB: 0.8-0.9;
- a convolution of kernel k is one product of the rows' windows (k positions of every channel
  side by side) with the kernel laid out [k * in, out], or, for narrow inputs, one product per
  tap over the rows laid end to end;
- activations stay [rows, positions, channels] from the first layer to the last, so no layer
  transposes, and each layer's channels are ordered so that ELU finds its fast path (`SeanetGemm`).

Sums are added in another order than oneDNN's, so the audio equals the package's up to float
rounding. The layers come from `frames.seanet_layers` as plain tensors; the streaming states are
the package's own, in its channel order (`previous`: [rows, in, k - 1], `partial`: [rows, out, s]),
read and replaced here, so a row may go back and forth between this path and the package's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F


@dataclass
class Conv:
    """A stride-1 convolution: `weight` [out, in, k], `state`: the name of its streaming state."""

    state: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    dilation: int = 1


@dataclass
class ConvTranspose:
    """A transposed convolution of kernel twice its stride: `weight` [in, out, 2 * stride]."""

    state: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int


@dataclass
class Elu:
    alpha: float = 1.0


@dataclass
class Residual:
    """x + layers(x)."""

    layers: list = field(default_factory=list)


class _ConvGemm:
    """Wide inputs (few positions, many channels): one product of the rows' windows with the
    kernel laid out [k * in, out]. Narrow ones (many positions, few channels), where copying k
    windows costs more than it saves: the rows laid end to end, one product per tap added into
    one output, the positions that straddle two rows dropped."""

    WINDOWS_FROM = 512  # input channels from which the windows are copied (measured: bench/step_profile.py)

    def __init__(self, layer: Conv, dtype, order_in=None, order_out=None):
        out_channels, in_channels, kernel = layer.weight.shape
        self.state, self.dilation, self.kernel = layer.state, layer.dilation, kernel
        self.in_channels, self.out_channels = in_channels, out_channels
        self.past = (kernel - 1) * layer.dilation
        self.windows = in_channels >= self.WINDOWS_FROM
        self.order_in, self.back_in = order_in, _inverse(order_in)
        weight = _reorder(_reorder(layer.weight.detach(), order_out, 0), order_in, 1).permute(2, 1, 0)  # [k, in, out]
        # Windows: row j * in + c holds tap j of input channel c, as the windows are laid out.
        self.weight = weight.reshape(kernel * in_channels, out_channels).contiguous().to(dtype)
        self.taps = [tap.contiguous().to(dtype) for tap in weight]
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros(out_channels)
        self.bias = _reorder(bias, order_out, 0).to(dtype)

    def __call__(self, x, states: dict, residual=None):
        rows, steps, channels = x.shape
        if not self.past:
            out = torch.addmm(self.bias, x.reshape(rows * steps, channels), self.weight).view(rows, steps, -1)
        else:
            state = states[self.state]
            previous = state["previous"]  # in the package's channel order
            padded = torch.cat([_reorder(previous, self.order_in, 1).transpose(1, 2).to(x.dtype), x], dim=1)
            state["previous"] = _reorder(padded[:, steps:].transpose(1, 2), self.back_in, 1).to(previous.dtype)
            out = self._windows(padded, rows, steps) if self.windows else self._taps(padded, rows, steps)
        if residual is not None:
            out += residual
        return out

    def _windows(self, padded, rows: int, steps: int):
        stride = padded.stride()
        windows = padded.as_strided((rows, steps, self.kernel, self.in_channels),
                                    (stride[0], stride[1], self.dilation * stride[1], stride[2]))
        flat = windows.reshape(rows * steps, self.kernel * self.in_channels)
        return torch.addmm(self.bias, flat, self.weight).view(rows, steps, self.out_channels)

    def _taps(self, padded, rows: int, steps: int):
        length = steps + self.past
        flat = padded.view(rows * length, self.in_channels)
        count = rows * length - self.past  # every output position, those straddling two rows too
        out = torch.empty((rows * length, self.out_channels), dtype=padded.dtype)
        torch.addmm(self.bias, flat[:count], self.taps[0], out=out[:count])
        for j in range(1, self.kernel):
            out[:count].addmm_(flat[j * self.dilation:j * self.dilation + count], self.taps[j])
        return out.view(rows, length, self.out_channels)[:, :steps]


class _ConvTransposeGemm:
    def __init__(self, layer: ConvTranspose, dtype, order_in=None, order_out=None):
        in_channels, out_channels, kernel = layer.weight.shape
        if kernel != 2 * layer.stride:
            raise ValueError(f"a transposed convolution of kernel {kernel} and stride {layer.stride}")
        self.state, self.stride, self.out_channels = layer.state, layer.stride, out_channels
        self.order_out, self.back_out = order_out, _inverse(order_out)
        weight = _reorder(_reorder(layer.weight.detach(), order_in, 0), order_out, 1)
        # [in, 2s * out]: column j * out + o is output position j of channel o.
        self.weight = weight.permute(0, 2, 1).reshape(in_channels, kernel * out_channels).contiguous().to(dtype)
        half = layer.stride * out_channels
        self.first, self.second = self.weight[:, :half].contiguous(), self.weight[:, half:].contiguous()
        bias = _reorder(layer.bias.detach() if layer.bias is not None else torch.zeros(out_channels), order_out, 0)
        # The bias goes on each position's own first half only: the second half is carried over.
        self.bias = bias.repeat(layer.stride).to(dtype)

    def __call__(self, x, states: dict):
        rows, steps, channels = x.shape
        s, out_channels = self.stride, self.out_channels
        # Each position's first half, then the position before's second half added into it in place:
        # the 2s outputs of every position are never written out whole (in the last layers they are
        # tens of MB, and the pass that added the halves was a quarter of the decoder's time).
        # The rows laid end to end: a row's first position gets the row before's last second half,
        # and is written again after, from the row's carried state.
        flat = x.reshape(rows * steps, channels)
        out = torch.addmm(self.bias, flat, self.first)
        out[1:].addmm_(flat[:-1], self.second)
        out = out.view(rows, steps, s * out_channels)
        state = states[self.state]
        partial = state["partial"]  # [rows, out, s], without the bias, in the package's channel order
        carried = _reorder(partial, self.order_out, 1).transpose(1, 2).reshape(rows, s * out_channels)
        torch.add(torch.addmm(self.bias, x[:, 0], self.first), carried.to(out.dtype), out=out[:, 0])
        last = torch.mm(x[:, -1], self.second).view(rows, s, out_channels)
        state["partial"] = _reorder(last.transpose(1, 2), self.back_out, 1).to(partial.dtype)
        return out.view(rows, steps * s, out_channels)


@dataclass
class _Elu(Elu):
    space: int | None = None  # which layer's output channels it runs over


class SeanetGemm:
    """The decoder of `layers` (from `frames.seanet_layers`) in `dtype`: `z` [rows, positions,
    channels] (channels-last) and the rows' stacked streaming states in, audio [rows, 1, samples] out.

    torch's ELU skips the exponential for eight lanes that are all positive. Channels-last, eight
    lanes are eight neighbouring channels, and Mimi's channels are nearly all of one sign each; so
    the first call counts how often each channel is positive where an ELU runs, and the layers are
    then laid out with each layer's output channels in that order (its weights and bias, the next
    layer's inputs and the carried states alike: the same sums in another order).
    """

    def __init__(self, layers: list, dtype=torch.float32):
        self.dtype = dtype
        self.layers = layers
        self.positives: dict | None = {}  # space -> how often each channel was positive (first call)
        self.steps = self._build_all({})
        # When set, called as timer(kind, flops, seconds) after each layer (bench/step_profile.py).
        self.timer = None

    def _build_all(self, orders: dict) -> list:
        self._spaces = 0
        return self._build(self.layers, orders, None)

    def _build(self, layers: list, orders: dict, space, keep_last=None) -> list:
        built = []
        for index, layer in enumerate(layers):
            if isinstance(layer, Elu):
                built.append(_Elu(layer.alpha, space))
            elif isinstance(layer, Residual):
                # The block's last layer writes in its input's order: the two are added.
                built.append(Residual(self._build(layer.layers, orders, space, keep_last=space)))
            elif isinstance(layer, (Conv, ConvTranspose)):
                if keep_last is not None and index == len(layers) - 1:
                    out = keep_last
                else:
                    self._spaces += 1
                    out = self._spaces
                kind = _ConvGemm if isinstance(layer, Conv) else _ConvTransposeGemm
                built.append(kind(layer, self.dtype, orders.get(space), orders.get(out)))
                space = out
            else:
                raise TypeError(f"no matrix-product form for {layer!r}")
        return built

    def __call__(self, z, states: dict):
        x = z.to(self.dtype).contiguous()
        x = self._run(self.steps, x, states)
        if self.positives is not None:
            orders = {space: torch.argsort(counts, descending=True, stable=True)
                      for space, counts in self.positives.items()}
            self.positives = None
            self.steps = self._build_all(orders)
        return x.transpose(1, 2)

    def _run(self, steps: list, x, states: dict, residual=None):
        own = False  # whether `x` is this call's own tensor, free to overwrite (not a block's input)
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            began = time.perf_counter() if self.timer is not None and not isinstance(step, Residual) else None
            if isinstance(step, Elu):
                if self.positives is not None and step.space is not None:
                    counts = (x > 0).sum(dim=(0, 1))
                    self.positives[step.space] = self.positives.get(step.space, 0) + counts
                # In place only where `x` is dense: a taps product's rows are views with gaps, and the
                # next product reads its input dense.
                x = F.elu_(x, step.alpha) if own and x.is_contiguous() else F.elu(x, step.alpha).contiguous()
                own = True
            elif isinstance(step, Residual):
                x = self._run(step.layers, x, states, residual=x)
                own = True
            elif isinstance(step, _ConvGemm):
                # A residual block's last convolution adds the block's input as it writes its output.
                x = step(x, states, residual if last else None)
                own = True
            else:
                x = step(x, states)
                own = True
            if began is not None:
                self.timer(*_kind(step, x), time.perf_counter() - began)
        if residual is not None and not isinstance(steps[-1], _ConvGemm):
            x = x + residual
        return x


def _reorder(tensor, order, dim: int):
    return tensor if order is None else tensor.index_select(dim, order)


def _inverse(order):
    return None if order is None else torch.argsort(order)


def _kind(step, out) -> tuple[str, int]:
    """A layer's type and its arithmetic (multiply-adds counted as two) for an output `out`."""
    rows, steps, channels = out.shape
    if isinstance(step, _ConvGemm):
        return "conv", 2 * rows * steps * channels * step.in_channels * step.kernel
    if isinstance(step, _ConvTransposeGemm):
        return "transposed conv", 2 * rows * (steps // step.stride) * step.weight.shape[0] * step.weight.shape[1]
    return "ELU", 0
