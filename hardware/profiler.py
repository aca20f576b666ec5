"""Measuring a PyTorch model's activity with forward hooks: a :class:`SpikeProfile`.

Nothing here is a table of the architecture: every synaptic layer (``Conv2d``,
``Conv3d``, ``Linear``) and every IF population is found in the model, and its shapes,
MACs, input kind and rates are read from the tensors that pass through it while the
model samples. Each call of the model is one diffusion step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sddpm.errors import SddpmError
from sddpm.hardware.spike_profile import Population, SpikeProfile, SynapticLayer
from sddpm.neurons import MultiStepIF

SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# synaptic layers the profiler cannot count yet: refused, never skipped silently
UNCOUNTED_TYPES = (nn.modules.conv._ConvTransposeNd, nn.Bilinear)


def real_fanout(conv: nn.Module, input_size: tuple) -> torch.Tensor:
    """Weights each input position really meets, ``[*input_size]``, for one in-channel.

    The transposed convolution of ones counts, for every input position, the
    (output position, kernel tap) pairs that read it; zero padding reads no input, so
    border positions meet fewer weights. Multiply by ``out_channels / groups``.
    """
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise SddpmError(f"exact event counts need numeric zero padding, found "
                         f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r} "
                         f"in {conv}")
    dims = len(input_size)
    out_size = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(input_size, conv.kernel_size, conv.stride, conv.padding,
                                 conv.dilation)
    ]
    extra = [
        n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for n, o, k, s, p, d in zip(input_size, out_size, conv.kernel_size, conv.stride,
                                    conv.padding, conv.dilation)
    ]
    transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    ones = torch.ones(1, 1, *out_size, dtype=torch.float64)
    taps = torch.ones(1, 1, *conv.kernel_size, dtype=torch.float64)
    counts = transpose(ones, taps, stride=conv.stride, padding=conv.padding,
                       output_padding=extra, dilation=conv.dilation)
    return counts[0, 0]


@dataclass
class _LayerProbe:
    """What one synaptic layer saw during the current step and over the run."""

    name: str
    module: nn.Module
    record: dict = field(default_factory=dict)
    fused: bool = True
    binary: bool = True
    repeats: bool = True  # its input was the model's input repeated over T
    step_nonzero: np.ndarray | None = None
    step_elements: float = 0.0
    step_events: float = 0.0
    fanout_cache: dict = field(default_factory=dict)

    def events(self, nonzero: torch.Tensor) -> float:
        """Exact synaptic events of a ``[N, C, ...]`` 0/1 mask of non-zero inputs, summed over N."""
        m = self.module
        if isinstance(m, nn.Linear):
            return float(nonzero.sum(dim=-1).double().sum()) * m.out_features
        size = tuple(nonzero.shape[2:])
        if size not in self.fanout_cache:
            self.fanout_cache[size] = real_fanout(m, size)
        per_position = nonzero.sum(dim=(0, 1)).double().cpu()
        return float((per_position * self.fanout_cache[size]).sum()) * m.out_channels / m.groups


class ActivityProfiler:
    """Hooks that turn sampling runs of ``model`` into a :class:`SpikeProfile`.

    Parameters
    ----------
    model : nn.Module
        A noise predictor called as ``model(x [B, ...], t [B])``, one call per step.
    timesteps : int
        Spiking timesteps T fused (timestep-major) into the batch; 1 for an ANN.

    Use as a context manager; :meth:`profile` returns what was recorded.
    """

    def __init__(self, model: nn.Module, timesteps: int):
        self.model, self.T = model, timesteps
        for name, m in model.named_modules():
            if isinstance(m, UNCOUNTED_TYPES):
                raise SddpmError(f"{name} is a {type(m).__name__}, which the profiler "
                                 "cannot count; only Conv1d/2d/3d and Linear layers")
        self.layers = [_LayerProbe(name, m) for name, m in model.named_modules()
                       if isinstance(m, SYNAPTIC_TYPES)]
        self.order: list[int] = []  # layer indices in the order they first ran
        self.populations = [(name, m) for name, m in model.named_modules()
                            if isinstance(m, MultiStepIF)]
        self.neurons = [0] * len(self.populations)
        self.batch = 0
        self.steps: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._pop_counts, self._pop_seen = None, []
        self._x, self._t = None, 0  # the current step's model input and diffusion step
        self._handles = []

    def __enter__(self):
        self._handles.append(self.model.register_forward_pre_hook(self._start_step))
        self._handles.append(self.model.register_forward_hook(self._end_step))
        for probe in self.layers:
            self._handles.append(probe.module.register_forward_hook(self._layer_hook(probe)))
        for i, (_, m) in enumerate(self.populations):
            self._handles.append(m.register_forward_hook(self._population_hook(i)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- hooks -------------------------------------------------------------------

    def _start_step(self, module, inputs):
        x, t = inputs[0], inputs[1]
        self.batch, self._x = x.shape[0], x.detach()
        self._t = int(t.flatten()[0])
        for probe in self.layers:
            probe.step_nonzero, probe.step_elements, probe.step_events = None, 0.0, 0.0
        self._pop_counts = np.zeros((len(self.populations), self.T))
        self._pop_seen = [False] * len(self.populations)

    def _layer_hook(self, probe: _LayerProbe):
        def hook(module, inputs, out):
            if module is not probe.module:
                return  # a deep copy carries our hook (NeuroBench counts on binary copies)
            if probe.step_nonzero is not None:
                raise SddpmError(f"layer {probe.name} ran twice in one forward pass; the "
                                 "profiler counts each synaptic layer once per step (give "
                                 "shared layers their own modules)")
            x = inputs[0].detach()
            n = x.shape[0]
            if n not in (self.batch, self.T * self.batch):
                raise SddpmError(f"layer {probe.name} got a leading dimension of {n}; the "
                                 f"profiler expects the batch ({self.batch}) or T*batch "
                                 f"({self.T * self.batch})")
            fused = n == self.T * self.batch and self.T > 1
            # the mask in the input's float type: float sums are an order of magnitude
            # faster than bool ones, and exact while each stays below 2**24
            nonzero = (x != 0).to(x.dtype if x.is_floating_point() else torch.float32)
            probe.binary = probe.binary and torch.equal(nonzero, x)
            per_sample = nonzero.reshape(n, -1).sum(dim=1).double().cpu().numpy()
            if fused:
                steps = x.reshape(self.T, self.batch, *x.shape[1:])
                probe.repeats &= (steps.shape[1:] == self._x.shape
                                  and bool((steps == self._x).all()))
                counts = per_sample.reshape(self.T, self.batch).sum(axis=1)
            else:
                counts = np.full(self.T, per_sample.sum())
            probe.fused &= fused
            probe.step_nonzero = counts
            probe.step_elements = x[0].numel() * self.batch
            probe.step_events = probe.events(nonzero) / self.batch
            if not probe.record:
                self.order.append(self.layers.index(probe))
                fan_in = (module.in_features if isinstance(module, nn.Linear) else
                          module.in_channels // module.groups * int(np.prod(module.kernel_size)))
                probe.record = {"kind": type(module).__name__.lower(),
                                "weight_shape": tuple(module.weight.shape),
                                "input_shape": tuple(x.shape[1:]),
                                "output_shape": tuple(out.shape[1:]),
                                "dense_macs": int(out[0].numel()) * fan_in,
                                "bias": module.bias is not None,
                                "stride": tuple(getattr(module, "stride", ()))}
        return hook

    def _population_hook(self, index: int):
        def hook(module, inputs, spikes):
            if self._pop_seen[index]:
                raise SddpmError(f"IF population {self.populations[index][0]} ran twice in "
                                 "one forward pass; give each use its own module")
            self._pop_seen[index] = True
            s = spikes.detach().reshape(self.T, -1)
            self.neurons[index] = s.shape[1] // self.batch
            self._pop_counts[index] = s.sum(dim=1).double().cpu().numpy()
        return hook

    def _end_step(self, module, inputs, out):
        rates = np.zeros((len(self.layers), self.T))
        events = np.zeros(len(self.layers))
        for i, probe in enumerate(self.layers):
            if probe.step_nonzero is None:
                raise SddpmError(f"layer {probe.name} did not run in a forward pass; the "
                                 "profiler expects every synaptic layer to run each step")
            # counts are per timestep over the batch (a fused layer) or over the whole
            # input (others); either way over one image-timestep's elements times B
            rates[i] = probe.step_nonzero / probe.step_elements
            events[i] = probe.step_events
        neurons = np.maximum(np.array(self.neurons, dtype=np.float64), 1) * self.batch
        self.steps.append((self._t, rates, events, self._pop_counts / neurons[:, None]))

    # -- result ------------------------------------------------------------------

    def profile(self, meta: dict | None = None) -> SpikeProfile:
        if not self.steps:
            raise SddpmError("nothing was profiled: the model was never called")
        missing = [p.name for p in self.layers if not p.record]
        if missing:
            raise SddpmError(f"layers never ran: {', '.join(missing)}")
        layers = []
        once = []
        for probe in self.layers:
            # a layer reading the model's input, repeated over T (direct encoding of the
            # image), is computed once; every other fused layer runs once per timestep
            per_timestep = probe.fused and not probe.repeats
            once.append(probe.fused and not per_timestep)
            layers.append(SynapticLayer(name=probe.name, per_timestep=per_timestep or self.T == 1,
                                        binary_input=probe.binary, **probe.record))
        events = np.stack([s[2] for s in self.steps])
        events[:, np.array(once, dtype=bool)] /= self.T
        order = np.array(self.order)  # execution order: 'the first conv' is the first run
        return SpikeProfile(
            layers=[layers[i] for i in order],
            populations=[Population(name, n) for (name, _), n in
                         zip(self.populations, self.neurons)],
            timesteps=self.T,
            diffusion_t=np.array([s[0] for s in self.steps], dtype=np.int64),
            input_rate=np.stack([s[1] for s in self.steps])[:, order],
            exact_events=events[:, order],
            population_rate=np.stack([s[3] for s in self.steps])
            if self.populations else np.zeros((len(self.steps), 0, self.T)),
            meta={"arch": "snn" if self.populations else "ann", **(meta or {})},
        )


def profile_sampling(model: nn.Module, diffusion, config, *, n: int, sampler: str,
                     steps: int | None, seed: int = 0, device="cpu", progress: bool = True,
                     meta: dict | None = None,
                     probes: Sequence = ()) -> tuple[SpikeProfile, torch.Tensor]:
    """Profile a real sampling run of ``n`` images (one batch); returns profile and images.

    Every denoising step is one entry of the profile, so summing a per-step quantity
    over the profile gives its cost per generated image. ``probes``: more context
    managers hooked on the model for the same run (NeuroBench's count, the chip's).
    """
    from sddpm.sampling import sample_images

    timesteps = model_timesteps(model) or 1
    with ActivityProfiler(model, timesteps) as profiler, ExitStack() as stack:
        for probe in probes:
            stack.enter_context(probe)
        images = sample_images(model, diffusion, config, n=n, sampler=sampler, steps=steps,
                               seed=seed, device=device, batch=n, progress=progress)
    info = {"sampler": sampler, "sampler_steps": len(profiler.steps), "images": n,
            "seed": seed, **(meta or {})}
    return profiler.profile(info), images


def profile_checkpoint(path, *, sampler: str = "ddim", steps: int | None = 50, n: int = 8,
                       seed: int = 0, threshold: float | None = None, progress: bool = True,
                       require_snn: bool = False,
                       probes: Callable | None = None) -> SpikeProfile:
    """Sample ``n`` images from a checkpoint with every layer's activity recorded.

    ``probes(model, payload)``, when given, returns more context managers to hook on the
    loaded model for the same run (see :func:`profile_sampling`).
    """
    from sddpm.diffusion import GaussianDiffusion, check_sampler
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint

    check_sampler(sampler)
    model, payload = model_from_checkpoint(path, threshold=threshold)
    if require_snn and payload["arch"] != "snn":
        raise SddpmError(f"{path} holds an ANN; Table 3's SNN rows need the spike rates of "
                         "a spiking model")
    config = ModelConfig.from_dict(payload["model_config"])
    diffusion = GaussianDiffusion(config.diffusion_steps)
    meta = {"checkpoint": str(path), "preset": config.name, "arch": payload["arch"],
            "trained_steps": int(payload.get("step", 0)), "threshold": threshold or 1.0,
            "source": "torch"}
    profile, _ = profile_sampling(model, diffusion, config, n=n, sampler=sampler,
                                  steps=steps, seed=seed,
                                  progress=progress, meta=meta,
                                  probes=probes(model, payload) if probes else ())
    return profile


def model_timesteps(model: nn.Module) -> int | None:
    """T of a spiking model (from its IF populations), ``None`` for an ANN."""
    for m in model.modules():
        if isinstance(m, MultiStepIF):
            return m.timesteps
    return None
