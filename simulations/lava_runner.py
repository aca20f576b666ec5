"""Running a :class:`sddpm.export.nir_to_lava.LavaNetwork` on Lava's CPU backend.

The host streams every ``Input`` into its ``Injector`` at its consumer's arrival step
and reads the ``Output`` from the ``Extractor`` in its window; images follow each other
T steps apart (pipelined: a batch of K images costs (K - 1) T + T + latency steps).
Every batch starts at a step that is 1 modulo T, where every population's periodic
reset lines up with its window.
"""

from __future__ import annotations

import gc
import math
import time
import warnings

import numpy as np

from sddpm.allocator import keep_freed_memory, release_freed_memory
from sddpm.errors import SddpmError
from sddpm.export.nir_to_lava import LavaNetwork


def _integer_injector_model():
    """Lava's Injector model on int32 (its own sends floats, which the fixed-point LIF
    cannot shift); defined on first use, when Lava is importable."""
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.proc.io.injector import PyLoihiInjectorModel

    class PyIntInjectorModel(PyLoihiInjectorModel):
        in_port: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        out_port: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def __init__(self, proc_params: dict) -> None:
            super().__init__(proc_params)
            self._zeros = np.zeros(self.proc_params["shape"], dtype=np.int32)

    return PyIntInjectorModel


#: Which process model computes Lava's ``Conv`` processes
CONV_MODELS = ("fast", "lava")
#: Lava allocates every process-to-process channel 64 messages deep in shared memory
#: by default (1 MB a message for a 32x32x128 float64 population); its processes step
#: in lock step, so a channel never holds more than one message of a step. Two deep:
#: fmnist-small with spike taps used 3.7 GB of the machine instead of 8.2 GB, and ran
#: its 36 steps in 6.4 s instead of 16.8 s (fewer pages to fault in)
COMPILE_CONFIG = {"pypy_channel_size": 2}


class LavaSession:
    """A compiled, running Lava network; call :meth:`forward`, then :meth:`stop`.

    A network built with fixed-point parameters runs Lava's ``fixed_pt`` models, any
    other ``floating_pt``. ``conv_model="fast"`` computes every ``Conv`` with the
    project's process model (:mod:`sddpm.export.lava_conv`: the same arithmetic, one
    product per step instead of one ``convolve2d`` per channel pair); ``"lava"`` keeps
    Lava's own.
    """

    def __init__(self, network: LavaNetwork, conv_model: str = "fast",
                 compile_config: dict | None = None):
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel

        self.net = network
        self.tag = "floating_pt" if network.fixed is None else "fixed_pt"
        if conv_model not in CONV_MODELS:
            raise SddpmError(f"unknown Conv model {conv_model!r}; expected one of "
                             f"{', '.join(CONV_MODELS)}")
        injector = PyLoihiInjectorModel if network.fixed is None else _integer_injector_model()
        # the host I/O models carry no precision tag: map them for either tag
        models = {Injector: injector, Extractor: PyLoihiExtractorModel}
        if conv_model == "fast":
            from sddpm.export.lava_conv.models import fast_conv_models

            models.update(fast_conv_models(self.tag))
        self.conv_model = conv_model
        self.run_cfg = Loihi2SimCfg(select_tag=self.tag, exception_proc_model_map=models)
        self.root = network.extractor
        # Lava's Sparse models rebuild csr matrices element by element; scipy warns in
        # every forked process. Forked children inherit this filter.
        warnings.filterwarnings("ignore", message="Changing the sparsity structure")
        # Lava forks one child per process from here: each copies this process's page
        # tables, so what it no longer uses goes back to the OS first
        gc.collect()
        was_kept = release_freed_memory()
        from sddpm.simulations.budget import resident_memory

        self.parent_bytes_at_fork = resident_memory()
        t0 = time.perf_counter()
        self.compile_config = {**COMPILE_CONFIG, **(compile_config or {})}
        self.root.create_runtime(run_cfg=self.run_cfg, compile_config=self.compile_config)
        if was_kept:  # the children are forked: the host's own work wants its heap kept
            keep_freed_memory()
        self.compile_seconds = time.perf_counter() - t0
        self.steps_done = 0
        self.spikes: dict = {}
        self.integer_stream = None
        self.broken = False
        self.lava_steps = 0
        self.run_seconds = 0.0

    def _run(self, steps: int) -> None:
        from lava.magma.core.run_conditions import RunSteps

        t0 = time.perf_counter()
        self.root.run(condition=RunSteps(num_steps=steps))
        self.run_seconds += time.perf_counter() - t0
        self.lava_steps += steps

    def forward(self, feeds: list[dict]) -> np.ndarray:
        """The ``Output`` stream for each image: ``[K, T, C, H, W]`` (biases added).

        ``feeds[k]`` maps every ``Input`` node to its current ``[C, H, W]``, the same
        every spiking timestep. With spike taps, :attr:`spikes` then holds every
        population's spikes ``[K, T, C, H, W]`` of this call.
        """
        net = self.net
        K = len(feeds)
        if self.broken:
            raise SddpmError("this Lava session failed in an earlier call and its channels "
                             "may hold stray frames; start a new session")
        if K == 0:
            raise SddpmError("no images to run")
        for k, feed in enumerate(feeds):
            missing = set(net.injectors) - set(feed)
            if missing:
                raise SddpmError(f"image {k}: inputs missing for {', '.join(sorted(missing))}")
            for name in net.injectors:
                expected = net.shapes[name][::-1]  # (C, H, W)
                if np.shape(feed[name]) != expected:
                    raise SddpmError(f"image {k}: input {name} has shape "
                                     f"{np.shape(feed[name])}, expected {expected}")
        try:
            return self._forward(feeds)
        except BaseException:
            self.broken = True  # a half-fed channel would shift every later call
            raise

    def _forward(self, feeds: list[dict]) -> np.ndarray:
        net, T = self.net, self.net.T
        K = len(feeds)
        if self.steps_done % T:  # every batch must start where the resets line up
            raise SddpmError(f"internal: the session is at step {self.steps_done}, not a "
                             f"multiple of T = {T}")
        total = math.ceil(net.steps_for(K) / T) * T  # keep batches aligned to T
        arrival = net.schedule.input_steps
        out_arrival = net.schedule.output_arrival
        shape_out = net.shapes[net.output]
        stream = np.zeros((K, T, *shape_out))
        spikes = {name: np.zeros((K, T, *net.shapes[name])) for name in net.taps}
        whc = [{name: net.encode(name, f[name]) for name in net.injectors} for f in feeds]
        zeros = {name: np.zeros_like(whc[0][name]) for name in net.injectors}
        chunk = net.buffer_steps
        for start in range(1, total + 1, chunk):
            steps = range(start, min(start + chunk, total + 1))
            for s in steps:
                for name, injector in net.injectors.items():
                    k, j = divmod(s - arrival[name], T)
                    injector.send(whc[k][name] if 0 <= k < K and s >= arrival[name]
                                  else zeros[name])
            self._run(len(steps))
            for s in steps:
                received = net.extractor.receive()
                k, j = divmod(s - out_arrival, T)
                if 0 <= k < K and s >= out_arrival:
                    stream[k, j] = received
                for name, tap in net.taps.items():
                    got = tap.receive()
                    k, j = divmod(s - net.schedule.arrival[name], T)
                    if 0 <= k < K and s >= net.schedule.arrival[name]:
                        spikes[name][k, j] = got
        self.steps_done += total
        self.spikes = {name: np.swapaxes(v, -1, -3) for name, v in spikes.items()}
        # the Extractor's integers before decoding, [K, T, C, H, W] (fixed point only)
        self.integer_stream = (np.swapaxes(stream, -1, -3).astype(np.int64)
                               if net.fixed is not None else None)
        return np.swapaxes(net.decode(stream), -1, -3)  # (W, H, C) -> (C, H, W)

    def stop(self) -> None:
        self.root.stop()
