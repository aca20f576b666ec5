"""Exact rewrites that turn the Spiking U-Net's layers into plain synaptic maps.

Each one is a pure function on numpy arrays (float64) and leaves its inputs intact:

- :func:`fold_batchnorm`: a convolution followed by an inference-mode BatchNorm is one
  convolution;
- :func:`split_input_channels`: a convolution over a channel concatenation is the sum
  of one convolution per concatenated part (fan-in edges);
- :func:`compose_pointwise`: a 1x1 convolution applied to the output of a convolution
  is one convolution, so a residual stream stays a sum of maps of upstream spikes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ConvMap:
    """``y = conv(x, weight, stride, padding) + bias``; ``weight [C_out, C_in, kh, kw]``."""

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]


def conv_output_hw(input_hw, kernel_hw, stride, padding) -> tuple[int, int]:
    """Output height and width of a convolution (dilation 1)."""
    return tuple((int(n) + 2 * int(p) - int(k)) // int(s) + 1
                 for n, k, s, p in zip(input_hw, kernel_hw, stride, padding))


def conv_map(conv) -> ConvMap:
    """A ``torch.nn.Conv2d`` as a :class:`ConvMap` in float64 (no torch in the result)."""
    w = conv.weight.detach().double().cpu().numpy()
    b = (conv.bias.detach().double().cpu().numpy() if conv.bias is not None
         else np.zeros(w.shape[0]))
    return ConvMap(w, b, tuple(conv.stride), tuple(conv.padding))


def fold_batchnorm(conv: ConvMap, mean: np.ndarray, var: np.ndarray, gamma: np.ndarray,
                   beta: np.ndarray, eps: float) -> ConvMap:
    """``BN(conv(x))`` with running statistics as one convolution."""
    scale = gamma / np.sqrt(var + eps)
    return replace(conv, weight=conv.weight * scale[:, None, None, None],
                   bias=(conv.bias - mean) * scale + beta)


def fold_batchnorm_module(conv: ConvMap, bn) -> ConvMap:
    """:func:`fold_batchnorm` with the statistics of a ``torch.nn.BatchNorm2d``."""
    as_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return fold_batchnorm(conv, as_np(bn.running_mean), as_np(bn.running_var),
                          as_np(bn.weight), as_np(bn.bias), bn.eps)


def split_input_channels(conv: ConvMap, sizes: list[int]) -> list[ConvMap]:
    """One map per concatenated input part; the bias goes with the first part only."""
    if sum(sizes) != conv.weight.shape[1]:
        raise ValueError(f"split sizes {sizes} do not add up to the {conv.weight.shape[1]} "
                         "input channels")
    parts, start = [], 0
    for i, size in enumerate(sizes):
        parts.append(replace(conv, weight=conv.weight[:, start:start + size],
                             bias=conv.bias if i == 0 else np.zeros_like(conv.bias)))
        start += size
    return parts


def compose_pointwise(outer: ConvMap, inner: ConvMap) -> ConvMap:
    """``outer(inner(x))`` for a 1x1, stride-1 ``outer``: one map with ``inner``'s geometry."""
    if outer.weight.shape[2:] != (1, 1) or tuple(outer.stride) != (1, 1) or any(outer.padding):
        raise ValueError("only a 1x1 convolution with stride 1 and no padding composes exactly")
    w = outer.weight[:, :, 0, 0]
    return replace(inner, weight=np.einsum("oc,cikl->oikl", w, inner.weight),
                   bias=w @ inner.bias + outer.bias)
