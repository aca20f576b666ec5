"""Lava's ``Conv`` arithmetic on binary spikes, dense (im2col + BLAS) or event-driven.

What it computes is exactly what ``lava.proc.conv.utils.conv`` computes for
``groups = 1, dilation = 1``: a true convolution on ``(W, H, C)`` data with
Lava's ``(C_out, kw, kh, C_in)`` kernel, zero padding, stride, and every nonzero
input counted as one spike (``num_message_bits = 0``). Lava does it with one
``scipy.signal.convolve2d`` per (output channel, input channel) pair, dense, every
step; here it is one product per step, in one of two forms:

- **dense**: the padded input unfolded into ``(W_out H_out, kw kh C_in)`` patches
  and multiplied by the kernel as a ``(kw kh C_in, C_out)`` matrix (BLAS). Costs
  ``W_out H_out kw kh C_in C_out`` multiply-adds whatever the input.
- **events**: each spike adds its kernel slice to the outputs it reaches, as a
  sparse one-hot ``(W_out H_out, kw kh C_in)`` matrix times the same kernel matrix.
  Costs one ``C_out``-long add per (spike, kernel tap that lands on an output):
  the synaptic events.

Both sum the same terms, in float64, or in float32 for integer kernels whose partial
sums all stay below 2**24 (Loihi's 8-bit weights). Integer partial sums are then exact,
so both products equal Lava's bit for bit; for float weights only the order of the
additions differs from Lava's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

#: The cost model that picks the product per call, in seconds, measured with one BLAS
#: thread by ``benchmarks/conv_kernels.py`` on this project's 2-core machine: a dense
#: multiply-add costs ~0.06 ns in BLAS; an event's C_out-long add ~1 ns per output
#: channel in scipy's sparse product (with the gather of the kernel rows it reaches),
#: which also costs ~0.15 ms more per call to set up. Events win below roughly 1-8 % of
#: inputs active, depending on the layer's size.
DENSE_S_PER_MAC = 0.06e-9
EVENT_S_PER_ADD = 1.0e-9
EVENT_SETUP_S = 0.15e-3
#: at most this many bytes of unfolded patches at once in the dense product
PATCH_BYTES = 4 * 2**20


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one ``Conv`` in Lava's ``(W, H, C)`` order."""

    input_shape: tuple  # (W, H, C_in)
    kernel: tuple  # (kw, kh)
    stride: tuple  # (sx, sy)
    padding: tuple  # (px, py)
    out_channels: int

    @property
    def output_shape(self) -> tuple:
        (w, h, _), (kw, kh) = self.input_shape, self.kernel
        (sx, sy), (px, py) = self.stride, self.padding
        return ((w + 2 * px - kw) // sx + 1, (h + 2 * py - kh) // sy + 1, self.out_channels)


class SpikeConv:
    """``Conv`` on one ``(W, H, C_in)`` input per call: ``(W_out, H_out, C_out)`` floats.

    Parameters
    ----------
    weight : np.ndarray
        Lava's kernel ``(C_out, kw, kh, C_in)`` (float, or integers for ``fixed_pt``).
    geometry : ConvGeometry
        Input shape, stride and padding (kernel and channels must match ``weight``).

    Each call takes whichever product the cost model says is cheaper for its number of
    spikes; :meth:`dense` and :meth:`events` compute one of them directly.
    """

    def __init__(self, weight: np.ndarray, geometry: ConvGeometry):
        c_out, kw, kh, c_in = weight.shape
        if (kw, kh) != tuple(geometry.kernel) or c_in != geometry.input_shape[2] \
                or c_out != geometry.out_channels:
            raise ValueError(f"kernel {weight.shape} does not fit {geometry}")
        self.geometry = geometry
        # Lava's kernel as a (kw kh C_in, C_out) matrix: a transposed view of the kernel,
        # no copy of a float64 one (hundreds of processes each hold one kernel, not two).
        # Lava convolves, so tap (i, j) reads the padded input at offset (kw-1-i,
        # kh-1-j): the patches are unfolded in that reversed order instead of flipping
        # the kernel
        self.dtype = _exact_dtype(weight)
        kernel = np.ascontiguousarray(weight, dtype=self.dtype)
        self.matrix = kernel.reshape(c_out, kw * kh * c_in).T
        wo, ho, _ = geometry.output_shape
        self._dense_s = DENSE_S_PER_MAC * wo * ho * self.matrix.size
        self._event_s = EVENT_S_PER_ADD * kw * kh * c_out  # per spike, an upper bound
        self.calls = {"dense": 0, "events": 0}

    def choose(self, spikes: int) -> str:
        """The product the cost model prefers for a call with ``spikes`` active inputs."""
        cheaper = EVENT_SETUP_S + self._event_s * spikes < self._dense_s
        return "events" if cheaper else "dense"

    def __call__(self, spikes: np.ndarray) -> np.ndarray:
        active = np.asarray(spikes) != 0
        how = self.choose(int(np.count_nonzero(active)))
        self.calls[how] += 1
        return self.events(active) if how == "events" else self.dense(active)

    def _padded(self, active: np.ndarray) -> np.ndarray:
        px, py = self.geometry.padding
        return np.pad(active, ((px, px), (py, py), (0, 0)))

    def dense(self, active: np.ndarray) -> np.ndarray:
        """Every multiply-add, as one BLAS product of unfolded patches."""
        g = self.geometry
        wo, ho, c_out = g.output_shape
        (kw, kh), (sx, sy) = g.kernel, g.stride
        padded = self._padded(active).astype(self.dtype)
        s0, s1, s2 = padded.strides
        # patches[x, y, i, j, c] = padded[x sx + kw-1-i, y sy + kh-1-j, c]
        patches = np.lib.stride_tricks.as_strided(
            padded[kw - 1:, kh - 1:], shape=(wo, ho, kw, kh, padded.shape[2]),
            strides=(sx * s0, sy * s1, -s0, -s1, s2), writeable=False)
        out = np.empty((wo, ho, c_out), dtype=self.dtype)
        # unfold a few output columns at a time: each of hundreds of processes then
        # holds a few MB of patches, not the whole unfolded input (19 MB for one
        # 32x32 conv of 256 channels)
        rows = max(1, PATCH_BYTES // (self.dtype.itemsize * ho * self.matrix.shape[0]))
        for x0 in range(0, wo, rows):
            block = patches[x0:x0 + rows]
            out[x0:x0 + rows] = (block.reshape(-1, self.matrix.shape[0])
                                 @ self.matrix).reshape(block.shape[0], ho, c_out)
        return out

    def events(self, active: np.ndarray) -> np.ndarray:
        """Only the synaptic events: each spike's kernel slice added where it lands."""
        g = self.geometry
        wo, ho, c_out = g.output_shape
        (kw, kh), (sx, sy), c_in = g.kernel, g.stride, g.input_shape[2]
        x, y, c = np.nonzero(self._padded(active))
        if x.size == 0:
            return np.zeros((wo, ho, c_out), dtype=self.dtype)
        a = np.arange(kw)[:, None, None]
        b = np.arange(kh)[None, :, None]
        dx, dy = x[None, None, :] - a, y[None, None, :] - b  # [kw, kh, S]
        xo, yo = dx // sx, dy // sy
        hit = ((dx % sx == 0) & (dy % sy == 0) & (xo >= 0) & (xo < wo)
               & (yo >= 0) & (yo < ho))
        tap = ((kw - 1 - a) * kh + (kh - 1 - b)) * c_in + c[None, None, :]
        rows = (xo * ho + yo)[hit]
        cols = np.broadcast_to(tap, hit.shape)[hit]
        # only the kernel rows some spike reaches, gathered contiguous (the matrix is a
        # transposed view: scipy would copy all of it on every call)
        used, cols = np.unique(cols, return_inverse=True)
        one_hot = sparse.csr_matrix((np.ones(rows.size, dtype=self.dtype), (rows, cols)),
                                    shape=(wo * ho, used.size))
        return np.asarray(one_hot @ self.matrix[used]).reshape(wo, ho, c_out)


def _exact_dtype(weight: np.ndarray) -> np.dtype:
    """float32 for integer kernels whose every partial sum float32 holds exactly (each
    output channel's sum of |w| below 2**24: 8-bit weights up to a fan-in of 132,000),
    which halves the memory and the time of the product; float64 for anything else."""
    w = np.asarray(weight)
    if w.dtype.kind in "iu" and w.size and (np.abs(w.astype(np.int64)).reshape(
            w.shape[0], -1).sum(axis=1).max() < 2 ** 24):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def signed_clamp(x: np.ndarray, bits: int) -> np.ndarray:
    """Wrap to a signed ``bits``-bit range, as Lava's fixed-point Conv does."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2
