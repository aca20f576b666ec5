"""A reference executor: runs an sddpm NIR graph in PyTorch, T steps with dt = 1.

It needs the NIR file only (not the checkpoint): the chip graph runs node by node in
topological order each spiking timestep, every edge into a node summed, IF state
carried over the steps (the convention in the file's metadata); the host side (the
encoding conv, the time embedding, the decoding head) is rebuilt from the parameters
stored in the file. Multi-input graphs included, which nirtorch 2.6's interpreter
cannot build (it redefines a node per ``Input``); a single-input graph also runs in
nirtorch (see ``tests/export``).
"""

from __future__ import annotations

from collections import defaultdict

import nir
import numpy as np
import torch
import torch.nn.functional as F

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours, topological_order
from sddpm.export.nir_file import Upsample2d, graph_info
from sddpm.presets import ModelConfig


def if_step(v, current: torch.Tensor, r, v_threshold) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a NIR ``IF`` node with ``v_reset = 0`` in discrete time (dt = 1).

    .. math::
        v[t] = v[t-1] + r I[t];\\quad s[t] = [v[t] > v_{th}];\\quad v[t] \\gets v[t](1 - s[t])

    Returns ``(spikes, v)``; both the executor and the nirtorch mapping step with it.
    """
    v = v + r * current
    spikes = (v > v_threshold).to(current.dtype)
    return spikes, v * (1 - spikes)


class NirExecutor:
    """Runs the chip part of a graph: ``run(inputs, T) -> (outputs, spikes)``.

    ``inputs`` maps each ``Input`` node to a tensor ``[B, *shape]`` (the same at every
    timestep); the results map ``Output`` nodes and IF nodes to ``[T, B, *shape]``.
    """

    def __init__(self, graph: nir.NIRGraph, dtype=torch.float64):
        self.graph, self.dtype = graph, dtype
        self.order = topological_order(graph)
        self.preds, _ = neighbours(graph)
        self.params = {}
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
        for name, node in graph.nodes.items():
            if isinstance(node, nir.Conv2d):
                plain = (int(node.groups) == 1 and np.all(np.asarray(node.dilation) == 1)
                         and np.asarray(node.padding).dtype.kind in "iu")
                if not plain:
                    raise SddpmError(f"Conv2d node {name} has groups {node.groups}, dilation "
                                     f"{node.dilation}, padding {node.padding}; the reference "
                                     "executor runs groups 1, dilation 1, numeric padding")
                self.params[name] = (as_t(node.weight), as_t(node.bias),
                                     tuple(int(s) for s in node.stride),
                                     tuple(int(p) for p in node.padding))
            elif isinstance(node, nir.IF):
                if np.any(np.asarray(node.v_reset) != 0):
                    raise SddpmError(f"IF node {name} resets to a non-zero v_reset; the "
                                     "executor implements reset to 0")
                # thresholds stay float64: a '>=' model's is the float64 just below theta
                # (torch_to_nir.STRICT_FROM_GE), which float32 would round onto theta
                self.params[name] = (as_t(node.r), torch.as_tensor(
                    np.asarray(node.v_threshold), dtype=torch.float64))
            elif isinstance(node, Upsample2d):
                self.params[name] = tuple(float(s) for s in node.scale_factor)
            elif not isinstance(node, (nir.Input, nir.Output)):
                raise SddpmError(f"node {name} is a {type(node).__name__}; the reference "
                                 "executor runs Input, Output, Conv2d, IF and sddpm.Upsample2d")

    def _step(self, name, node, x, v):
        if isinstance(node, nir.Conv2d):
            w, b, stride, padding = self.params[name]
            return F.conv2d(x, w, b, stride=stride, padding=padding)
        if isinstance(node, nir.IF):
            r, threshold = self.params[name]
            spikes, v[name] = if_step(v.get(name, 0), x, r, threshold)
            return spikes
        if isinstance(node, Upsample2d):
            return F.interpolate(x, scale_factor=self.params[name], mode="nearest")
        return x

    @torch.no_grad()
    def run(self, inputs: dict, timesteps: int) -> tuple[dict, dict]:
        missing = set(self.graph.inputs) - set(inputs)
        if missing:
            raise SddpmError(f"inputs missing for {', '.join(sorted(missing))}")
        recorded = defaultdict(list)
        v: dict = {}
        for _ in range(timesteps):
            values = {}
            for name in self.order:
                node = self.graph.nodes[name]
                if isinstance(node, nir.Input):
                    values[name] = inputs[name].to(self.dtype)
                    continue
                x = sum(values[p] for p in self.preds[name])
                values[name] = self._step(name, node, x, v)
                if isinstance(node, (nir.IF, nir.Output)):
                    recorded[name].append(values[name])
        stacked = {k: torch.stack(vals) for k, vals in recorded.items()}
        outputs = {k: stacked[k] for k in self.graph.outputs}
        spikes = {k: s for k, s in stacked.items() if k not in self.graph.outputs}
        return outputs, spikes


class HostSide(torch.nn.Module):
    """The host's share of the U-Net, rebuilt from the parameters in a NIR file."""

    def __init__(self, graph: nir.NIRGraph, dtype=torch.float64):
        super().__init__()
        from sddpm.export.torch_to_nir import is_host_parameter
        from sddpm.snn_unet import SpikingUNet

        info = graph_info(graph)
        self.config = ModelConfig.from_dict(info["model_config"])
        self.info = info
        net = SpikingUNet(self.config).to(dtype)  # before loading: float64 stays float64
        stored = graph.metadata.get("host")
        if not isinstance(stored, dict):
            raise SddpmError("the NIR file holds no host-side parameters (metadata 'host'); "
                             "export it again with sddpm-export")
        host = {k: torch.as_tensor(np.asarray(v)) for k, v in stored.items()}
        expected = {k: v for k, v in net.state_dict().items() if is_host_parameter(k, v)}
        if set(host) != set(expected):
            odd = sorted(set(host) ^ set(expected))[:3]
            raise SddpmError(f"the host parameters in the file do not fit its model config "
                             f"({', '.join(odd)} ...); the file is damaged")
        wrong = [k for k, v in host.items() if v.shape != expected[k].shape]
        if wrong:
            raise SddpmError(f"host parameter {wrong[0]} has shape {tuple(host[wrong[0]].shape)}, "
                             f"the config needs {tuple(expected[wrong[0]].shape)}; the file is damaged")
        net.load_state_dict(host, strict=False)
        # the chip's parameters are the graph's business, not the host's: a model of the
        # paper's size would otherwise hold 0.5 GB of unused float64 initial weights
        for name, param in net.named_parameters():
            if name not in host:
                param.data = torch.empty(0, dtype=dtype)
        # deployed parameters, never trained: decode stays differentiable in its input
        # stream (quantisation-aware fine-tuning trains through it) without a graph here
        self.net = net.eval().requires_grad_(False)
        self.dtype = dtype
        self.input_shapes = {name: tuple(int(s) for s in node.input_type["input"])
                             for name, node in graph.inputs.items()}

    @torch.no_grad()
    def inputs(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """The graph's inputs for images ``x [B, C, H, W]`` at diffusion steps ``t [B]``."""
        net = self.net
        x = x.to(self.dtype)
        feeds = {"input": net.encoder.bn1(net.encoder.conv1(x))}
        temb = net.time_embedding(t)
        for entry in self.info["inputs"]["temb"]:
            block = net.get_submodule(entry["block"])
            per_channel = block.temb_proj(temb)
            shape = self.input_shapes[entry["node"]]
            feeds[entry["node"]] = per_channel[:, :, None, None].expand(-1, *shape).clone()
        return feeds

    def decode(self, stream: torch.Tensor) -> torch.Tensor:
        """``stream [T, B, C, H, W]`` -> predicted noise ``[B, img, H, W]``."""
        T, B = stream.shape[:2]
        return self.net.decoder(stream.reshape(T * B, *stream.shape[2:]))


class ExportedNoisePredictor:
    """Host side and chip graph together: ``(x, t) -> (eps, {IF node: [T, B, ...]})``.

    Built once (the host modules, the executor's tensors), called every denoising step.
    """

    def __init__(self, graph: nir.NIRGraph, dtype=torch.float64):
        self.graph = graph
        self.host = HostSide(graph, dtype)
        self.executor = NirExecutor(graph, dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict]:
        step = self.host.info["diffusion_step"]
        if step is not None and bool((t != step).any()):
            raise SddpmError(f"this graph was exported for diffusion step {step} only")
        feeds = self.host.inputs(x, t)
        outputs, spikes = self.executor.run({k: feeds[k] for k in self.graph.inputs},
                                            self.host.config.timesteps)
        return self.host.decode(outputs["stream"]), spikes


def predict_noise(graph: nir.NIRGraph, x: torch.Tensor, t: torch.Tensor,
                  dtype=torch.float64) -> tuple[torch.Tensor, dict]:
    """The noise the exported network predicts for ``x`` at ``t``, and every spike train."""
    return ExportedNoisePredictor(graph, dtype)(x, t)


class IFStep(torch.nn.Module):
    """One step of a NIR ``IF`` node for nirtorch: ``(input, state) -> (spikes, state)``."""

    def __init__(self, node: nir.IF):
        super().__init__()
        self.register_buffer("r", torch.as_tensor(np.asarray(node.r)))
        self.register_buffer("v_threshold", torch.as_tensor(np.asarray(node.v_threshold)))

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state
        return if_step(v, x, self.r, self.v_threshold)


def _upsample_module(node: Upsample2d) -> torch.nn.Module:
    return torch.nn.Upsample(scale_factor=tuple(float(s) for s in node.scale_factor),
                             mode="nearest")


class _SummedOutput(torch.nn.Module):
    """nirtorch returns the edges into an ``Output`` one by one; NIR sums them."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, state=None):
        *values, state = self.module(x, state)
        return sum(values), state


def nirtorch_module(graph: nir.NIRGraph, dtype=torch.float64) -> torch.nn.Module:
    """The graph in nirtorch's interpreter: ``(input, state) -> (output, state)`` per step.

    Two limits of nirtorch 2.6 shape this: it builds graphs with one ``Input`` only (with
    several it redefines a node and fails; export for one diffusion step to get one),
    and it returns the edges into an ``Output`` as separate tensors, summed here.
    """
    from nirtorch import nir_interpreter

    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise SddpmError(f"nirtorch 2.6 builds graphs with one Input only, this one has "
                         f"{len(graph.inputs)}; export with --diffusion-step")
    module = nir_interpreter.nir_to_torch(
        graph, {nir.IF: IFStep, Upsample2d: _upsample_module}, dtype=dtype)
    return _SummedOutput(module)
