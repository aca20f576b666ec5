"""NeuroBench's own synaptic-operation count of a sampling run, layer by layer.

NeuroBench (PyPI ``neurobench``) is the community's benchmark harness; its
``SynapticOperations`` metric is what a reader of an SNN energy claim can rerun. Its
rule, in its code (``neurobench.metrics.utils.layers``): a connection layer (Linear,
Conv1d/2d/3d, RNN cells) is AC when every value its input held was 0, 1 or -1, else
MAC; the operations are the non-zero inputs times the non-zero weights they really
meet (no padding taps), bias excluded; per sample is per ``data[0].size(0)``.

Nothing here re-implements that rule: :class:`NeuroBenchCounter` wraps the model in
NeuroBench's ``TorchModel``, lets NeuroBench register its hooks, and after every
forward pass calls one ``SynapticOperations`` per connection layer (the metric sums
over the hooks it is given, so a layer's own instance gives that layer's count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sddpm.errors import SddpmError

NEUROBENCH_VERSION = "2.3.0"


def _neurobench():
    try:
        from neurobench.metrics.workload import SynapticOperations
        from neurobench.models import TorchModel
    except ImportError as e:
        raise SddpmError(f"the 'neurobench' convention needs NeuroBench {NEUROBENCH_VERSION} "
                         f"({e}); pip install 'neurobench=={NEUROBENCH_VERSION}' "
                         "'torchaudio==2.3.1'") from None
    return TorchModel, SynapticOperations


def neurobench_version() -> str:
    from importlib.metadata import version

    return version("neurobench")


class _OneLayer:
    """What ``SynapticOperations`` reads of a model: its connection hooks, here one."""

    def __init__(self, hook):
        self.connection_hooks = [hook]


def _count_layer(metric_type, hook, preds, data) -> tuple[float, float, str]:
    """One connection layer's ``(effective ops, dense ops, kind)`` by its own metric."""
    result = metric_type()(_OneLayer(hook), preds, data)
    mac = result["Effective_MACs"]
    # NeuroBench calls an input of only zeros spiking too: no MACs means AC
    return result["Effective_ACs"] + mac, result["Dense"], "MAC" if mac else "AC"


@dataclass
class NeuroBenchCount:
    """Per profiled forward pass and layer, per sample (image): NeuroBench's operations.

    ``effective`` ``[S, L]``; ``kind`` ``[L]`` "AC" or "MAC" (a layer that was MAC in
    any step is "MAC");
    ``dense`` ``[S, L]`` NeuroBench's count with every input and weight non-zero.
    """

    layers: list[str]
    kind: list[str]
    effective: np.ndarray
    dense: np.ndarray
    version: str

    def totals(self) -> dict:
        """Mean per forward over steps, as NeuroBench's metric reports them."""
        mean = self.effective.mean(axis=0)
        ac = np.array([k == "AC" for k in self.kind])
        return {"Effective_MACs": float(mean[~ac].sum()), "Effective_ACs": float(mean[ac].sum()),
                "Dense": float(self.dense.mean(axis=0).sum())}


class NeuroBenchCounter:
    """Context manager: NeuroBench counts every forward pass of ``model`` made inside it."""

    def __init__(self, model: nn.Module):
        TorchModel, self._metric = _neurobench()
        self.model = model
        self.wrapper = TorchModel(model)  # NeuroBench's model wrapper finds the layers
        names = {id(m): n for n, m in model.named_modules()}
        self.wrapper.register_hooks()
        self.names = [names[id(h.layer)] for h in self.wrapper.connection_hooks]
        self.steps: list[tuple[list, list, list]] = []
        self._handles = []

    def __enter__(self):
        self._handles = [self.model.register_forward_pre_hook(self._start),
                         self.model.register_forward_hook(self._end)]
        self.wrapper.reset_hooks()
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self.wrapper.cleanup_hooks()

    def _start(self, module, inputs):
        self.wrapper.reset_hooks()

    def _end(self, module, inputs, preds):
        data = (inputs[0],)  # per sample is per data[0].size(0): our batch of images
        counted = []
        for name, hook in zip(self.names, self.wrapper.connection_hooks):
            if not hook.inputs:
                raise SddpmError(f"layer {name} did not run in a forward pass; NeuroBench "
                                 "counts every connection layer")
            counted.append(_count_layer(self._metric, hook, preds, data))
        self.wrapper.reset_hooks()
        self.steps.append(tuple(map(list, zip(*counted))))

    def count(self) -> NeuroBenchCount:
        if not self.steps:
            raise SddpmError("NeuroBench counted nothing: the model was never called")
        kinds = ["MAC" if any(s[2][i] == "MAC" for s in self.steps) else "AC"
                 for i in range(len(self.names))]
        return NeuroBenchCount(
            layers=list(self.names), kind=kinds,
            effective=np.array([s[0] for s in self.steps], dtype=np.float64),
            dense=np.array([s[1] for s in self.steps], dtype=np.float64),
            version=neurobench_version())


@torch.no_grad()
def neurobench_at_rates(model: nn.Module, x: torch.Tensor, t: torch.Tensor, rates: dict,
                        timesteps: int, seed: int = 0) -> NeuroBenchCount:
    """NeuroBench's count of one forward pass whose spike inputs are drawn at given rates.

    A rate is not a tensor, so NeuroBench cannot count it directly: the model runs once
    (NeuroBench's hooks record every connection layer's real input), then each layer
    named in ``rates`` (name -> ``[T]`` firing rates) has its input replaced by Bernoulli
    spikes at those rates, timestep-major like the model's, and ``SynapticOperations``
    counts what it is given. Other layers keep their real (analog) inputs.
    """
    TorchModel, metric_type = _neurobench()
    wrapper = TorchModel(model)
    names = {id(m): n for n, m in model.named_modules()}
    wrapper.register_hooks()
    generator = torch.Generator().manual_seed(seed)
    layers, counted = [], []
    try:
        model(x, t)
        for hook in wrapper.connection_hooks:
            name = names[id(hook.layer)]
            if name in rates:
                (real,) = hook.inputs[0]
                per_t = torch.as_tensor(np.asarray(rates[name]), dtype=real.dtype)
                shape = (timesteps, real.shape[0] // timesteps, *real.shape[1:])
                p = per_t.view(-1, *[1] * (len(shape) - 1)).expand(shape)
                hook.inputs[:] = [(torch.bernoulli(p, generator=generator).reshape(real.shape),)]
            layers.append(name)
            counted.append(_count_layer(metric_type, hook, None, (x,)))
    finally:
        wrapper.cleanup_hooks()
    effective, dense, kinds = zip(*counted)
    return NeuroBenchCount(layers=layers, kind=list(kinds), effective=np.array([effective]),
                           dense=np.array([dense]), version=neurobench_version())
