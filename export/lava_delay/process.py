"""``DelayLine``: what arrives at ``s_in`` leaves ``a_out`` ``delay`` steps later.

.. math::
    a\\_out[t] = s\\_in[t - d]

Lava's ``DelaySparse`` does this with a weight matrix, but keeps its delays as a dense
``(N, N)`` array and rebuilds its sparse matrices every step: 8.6 GB for one delay
line of a 32x32x32 population. A ring buffer of ``d`` frames is all a line needs.
"""

from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class DelayLine(AbstractProcess):
    """Delay a ``shape`` stream of spikes (or values) by ``delay >= 1`` Lava steps.

    Parameters
    ----------
    shape : tuple
        Shape of the stream.
    delay : int
        Steps between arrival and departure; one step is what any Lava connection
        costs, so a line of ``d`` replaces ``d`` relays.
    """

    def __init__(self, *, shape: tuple, delay: int, name: str | None = None):
        if int(delay) < 1:
            raise ValueError(f"DelayLine needs delay >= 1, got {delay}")
        super().__init__(shape=shape, delay=int(delay), name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.buffer = Var(shape=(int(delay), *shape), init=0)
