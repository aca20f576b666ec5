"""Process models of Lava's own ``Conv`` process that compute with :class:`SpikeConv`.

Lava's models (``lava.proc.conv.models``) convolve with one ``scipy.signal.convolve2d``
per (output channel, input channel) pair every step; these keep the process, its
ports, its Vars and its step protocol (send last step's result, receive, compute,
clamp) and replace only the arithmetic. Lava finds models next to their process, so
these are chosen explicitly, through a run config's ``exception_proc_model_map``
(:func:`fast_conv_models`). Groups or dilation other than 1 fall back to Lava's own
arithmetic, so every Conv stays computable.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils
from lava.proc.conv.models import PyConvModelFixed, PyConvModelFloat
from lava.proc.conv.process import Conv

from sddpm.export.lava_conv.kernel import ConvGeometry, SpikeConv, signed_clamp


class _SpikeConvStep:
    """The step of Lava's ``AbstractPyConvModel`` with a one-product convolution."""

    def _kernel(self):
        """The :class:`SpikeConv` of this process, built on the first step (in the forked
        process, from its Vars); False where groups or dilation need Lava's arithmetic."""
        if getattr(self, "_conv", None) is None:
            # Lava forks one OS process per process model: one BLAS thread each, or
            # hundreds of them fight over the cores
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
            self._conv = False
            if int(self.groups[0]) == 1 and np.all(self.dilation == 1):
                geometry = ConvGeometry(input_shape=tuple(self.s_in.shape),
                                        kernel=tuple(int(k) for k in self.kernel_size),
                                        stride=tuple(int(s) for s in self.stride),
                                        padding=tuple(int(p) for p in self.padding),
                                        out_channels=int(self.weight.shape[0]))
                self._conv = SpikeConv(self.weight, geometry)
        return self._conv

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        spikes = self.s_in.recv()
        graded = self.num_message_bits.item() > 0
        conv = False if graded else self._kernel()
        if conv:
            a_out = conv(spikes)
        else:  # graded spikes are values, not events: Lava's own arithmetic
            a_out = utils.conv(spikes if graded else spikes.astype(bool), self.weight,
                               self.kernel_size,
                               self.stride, self.padding, self.dilation, self.groups[0])
        self.a_buf = self.clamp_precision(a_out.astype(self.weight.dtype))


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikeConvFloat(_SpikeConvStep, PyConvModelFloat):
    """Lava's float Conv, one product per step."""


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeConvFixed(_SpikeConvStep, PyConvModelFixed):
    """Lava's fixed-point Conv (integers exact, 24-bit wrap), one product per step."""

    def clamp_precision(self, x: np.ndarray) -> np.ndarray:
        return signed_clamp(x, bits=24)


def fast_conv_models(tag_name: str) -> dict:
    """``{Conv: model}`` for a run config's ``exception_proc_model_map``."""
    if tag_name not in ("floating_pt", "fixed_pt"):
        raise ValueError(f"no Conv model for tag {tag_name!r}")
    return {Conv: PySpikeConvFloat if tag_name == "floating_pt" else PySpikeConvFixed}
