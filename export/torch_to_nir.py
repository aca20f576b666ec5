"""The Spiking U-Net as a NIR graph: what the chip runs, with the host interface.

Partition. Chip: every IF population and every linear map from spikes to the next
population's input. Host: the encoding convolution on the analog image x_t (and its
BatchNorm), the time-embedding MLP with each block's projection, and the analog
decoding head. Interface, per spiking timestep (dt = 1):

- ``Input`` ``input`` ``[ch, H, W]``: the current into the encoder's IF population,
  ``BN(conv(x_t))``, the same at every timestep;
- ``Input`` ``temb:<block>`` ``[C, H, W]``: that block's time-embedding projection
  ``Linear(SiLU(temb(t)))`` broadcast over H and W, the same at every timestep
  (absent from a graph exported for one fixed diffusion step, where it is folded into
  a bias);
- ``Output`` ``stream`` ``[ch, H, W]``: the analog stream the decoding head reads.

The analog residual stream is a sum of linear maps of upstream spikes, so no node of
the graph is analog state: every IF population receives that sum through several
edges (fan-in sums), concatenations split the consumer's population and weights by
input channel, and 1x1 shortcuts compose with the maps they follow.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import nir
import numpy as np
import torch
from torch import nn

from sddpm.errors import SddpmError
from sddpm.export.nir_file import FORMAT, FORMAT_VERSION, Upsample2d
from sddpm.export.rewrites import (
    ConvMap,
    compose_pointwise,
    conv_map,
    conv_output_hw,
    fold_batchnorm_module,
    split_input_channels,
)
from sddpm.neurons import MultiStepIF, strict_threshold
from sddpm.snn_unet import (
    PreSpikeResBlock,
    SpikingDownsample,
    SpikingUNet,
    SpikingUpsample,
    StandardSpikingResBlock,
)

NEURON_CONVENTION = (
    "discrete time, dt = 1: v[t] = v[t-1] + r * I[t]; spike when v[t] > v_threshold; "
    "then v[t] = v_reset; I[t] is the sum of every edge into the population at step t"
)
# NIR's IF is strict; a model firing on v >= theta is written with the float just below
STRICT_FROM_GE = (
    "the model fires on v >= theta (fires_on '>='): every v_threshold is the largest "
    "float64 below theta (float64 whatever the weights' dtype), so NIR's strict "
    "v > v_threshold is exactly v >= theta on float64 and float32 membranes; theta is "
    "nextafter(v_threshold, +inf)"
)
HOST_PREFIXES = ("time_embedding.", "encoder.conv1.", "encoder.bn1.", "decoder.")


@dataclass
class _Term:
    """One synaptic map into a stream: ``cmap`` applied to the output of node ``source``."""

    source: str
    cmap: ConvMap
    origin: str  # the torch layers it stands for, for the node's name
    root: str = ""  # the torch layer it started from, before any composition
    node: str | None = None  # its NIR node, once made

    def __post_init__(self):
        self.root = self.root or self.origin


@dataclass
class _Stream:
    """An analog stream ``[C, H, W]``: the sum of its terms (no analog state)."""

    terms: list[_Term]
    shape: tuple


def nir_threshold(theta: float, fires_on: str, dtype) -> float:
    """The ``v_threshold`` of NIR's strict IF that fires as the model does on ``dtype``."""
    return strict_threshold(theta, fires_on, torch.from_numpy(np.zeros(0, dtype=dtype)).dtype)


@dataclass
class _Builder:
    dtype: np.dtype
    threshold_of: dict
    fires_on: str = ">"
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    populations: list = field(default_factory=list)  # (node, torch path, channel slice)
    temb_inputs: list = field(default_factory=list)

    def add(self, name: str, node) -> str:
        if name in self.nodes:
            raise SddpmError(f"two NIR nodes named {name}; the exporter made a duplicate")
        self.nodes[name] = node
        return name

    def term_node(self, term: _Term, input_hw: tuple) -> str:
        if term.node is None:
            name = term.origin
            k = 1
            while name in self.nodes:
                k += 1
                name = f"{term.origin}#{k}"
            m = term.cmap
            term.node = self.add(name, nir.Conv2d(
                input_shape=np.array(input_hw), weight=m.weight.astype(self.dtype),
                stride=np.array(m.stride), padding=np.array(m.padding),
                dilation=np.array([1, 1]), groups=1, bias=m.bias.astype(self.dtype)))
            self.edges.append((term.source, term.node))
        return term.node

    def feed(self, stream: _Stream, target: str, source_hw: dict) -> None:
        for term in stream.terms:
            self.edges.append((self.term_node(term, source_hw[term.source]), target))

    def population(self, name: str, path: str, shape: tuple, channels: tuple) -> str:
        # float64 for '>=': no float32 lies strictly between the float64 just below
        # theta and theta, so a float32 threshold would round back onto theta
        th_dtype = np.float64 if self.fires_on == ">=" else self.dtype
        threshold = nir_threshold(self.threshold_of[path], self.fires_on, th_dtype)
        self.add(name, nir.IF(r=np.ones(shape, dtype=self.dtype),
                              v_threshold=np.full(shape, threshold, dtype=th_dtype),
                              v_reset=np.zeros(shape, dtype=self.dtype)))
        self.populations.append({"node": name, "torch": path, "channels": list(channels),
                                 "shape": list(shape)})
        return name


def _conv_out(shape: tuple, m: ConvMap) -> tuple:
    return (m.out_channels, *conv_output_hw(shape[1:], m.weight.shape[2:], m.stride, m.padding))


def _pointwise(stream: _Stream, outer: ConvMap, origin: str) -> list[_Term]:
    """``outer`` (1x1) applied to every term of ``stream``; its bias added once."""
    silent = replace(outer, bias=np.zeros_like(outer.bias))
    return [_Term(t.source, compose_pointwise(outer if i == 0 else silent, t.cmap),
                  f"{origin}@{t.root}", t.root)
            for i, t in enumerate(stream.terms)]


def _check(module: nn.Module, path: str, kinds: tuple) -> None:
    if not isinstance(module, kinds):
        raise SddpmError(f"cannot export {path}: it is a {type(module).__name__}; the NIR "
                         f"exporter knows {', '.join(k.__name__ for k in kinds)} there")
    if isinstance(module, nn.Conv2d):
        _check_conv(module, path)
    if isinstance(module, nn.BatchNorm2d) and module.running_mean is None:
        raise SddpmError(f"cannot export {path}: a BatchNorm without running statistics "
                         "cannot be folded")


def _check_conv(conv: nn.Conv2d, path: str, pointwise: bool = False) -> None:
    """Only what :class:`ConvMap` and nir.Conv2d say: groups 1, dilation 1, zero padding."""
    problems = []
    if conv.groups != 1:
        problems.append(f"groups={conv.groups}")
    if tuple(conv.dilation) != (1, 1):
        problems.append(f"dilation={tuple(conv.dilation)}")
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        problems.append(f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r}")
    if pointwise and (tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1)
                      or any(conv.padding)):
        problems.append("a shortcut must be a 1x1 conv with stride 1 and no padding")
    if problems:
        raise SddpmError(f"cannot export {path}: {'; '.join(problems)} (the exporter maps "
                         "plain convolutions: groups 1, dilation 1, numeric zero padding)")


def _population_parts(b: _Builder, parts: list[_Stream], name: str, path: str,
                      hw: dict) -> list[str]:
    """The IF population ``path`` over the concatenation of ``parts``: one node per part."""
    pops, offset = [], 0
    for k, part in enumerate(parts):
        node = name if len(parts) == 1 else f"{name}:{k}"
        pops.append(b.population(node, path, part.shape, (offset, offset + part.shape[0])))
        b.feed(part, node, hw)
        hw[node] = part.shape[1:]
        offset += part.shape[0]
    return pops


def _check_res_layers(block: nn.Module, path: str, neurons: tuple, shortcut: tuple) -> None:
    for name in neurons:
        _check(getattr(block, name), f"{path}.{name}", (MultiStepIF,))
    for name in ("conv1", "conv2"):
        _check(getattr(block, name), f"{path}.{name}", (nn.Conv2d,))
    for name in ("bn1", "bn2"):
        _check(getattr(block, name), f"{path}.{name}", (nn.BatchNorm2d,))
    _check(block.shortcut, f"{path}.shortcut", shortcut)


def _suffixes(parts: list) -> Callable[[int], str]:
    """Node-name suffix of part k of a concatenation (none for a single part)."""
    return (lambda k: "") if len(parts) == 1 else (lambda k: f":{k}")


def _first_conv(b: _Builder, block: nn.Module, path: str, parts: list[_Stream],
                pops: list[str], hw: dict, temb: torch.Tensor | None,
                target: str) -> tuple[str, tuple]:
    """A residual block's ``conv1-BN1 (+ time embedding)`` from its input populations
    into the IF population ``path.target``; returns that population and its shape."""
    sizes = [p.shape[0] for p in parts]
    conv1 = split_input_channels(fold_batchnorm_module(conv_map(block.conv1), block.bn1), sizes)
    shape = _conv_out(parts[0].shape, conv1[0])
    if temb is not None:  # one diffusion step: its time-embedding current is a constant
        projection = copy.deepcopy(block.temb_proj).double()
        per_channel = projection(temb)[0].detach().cpu().numpy()
        conv1[0] = replace(conv1[0], bias=conv1[0].bias + per_channel)
    suffix = _suffixes(parts)
    pop = b.population(f"{path}.{target}", f"{path}.{target}", shape, (0, shape[0]))
    b.feed(_Stream([_Term(p, m, f"{path}.conv1{suffix(k)}")
                    for k, (p, m) in enumerate(zip(pops, conv1))], shape), pop, hw)
    hw[pop] = shape[1:]
    if temb is None:
        name = b.add(f"temb:{path}", nir.Input(input_type=np.array(shape)))
        b.edges.append((name, pop))
        b.temb_inputs.append({"node": name, "block": path, "channels": shape[0]})
    return pop, shape


def _res_block(b: _Builder, block: PreSpikeResBlock, path: str, parts: list[_Stream],
               hw: dict, temb: torch.Tensor | None) -> _Stream:
    _check_res_layers(block, path, ("neuron1", "neuron2"), (nn.Conv2d, nn.Identity))
    pops = _population_parts(b, parts, f"{path}.neuron1", f"{path}.neuron1", hw)
    sizes = [p.shape[0] for p in parts]
    suffix = _suffixes(parts)
    neuron2, shape = _first_conv(b, block, path, parts, pops, hw, temb, "neuron2")
    conv2 = fold_batchnorm_module(conv_map(block.conv2), block.bn2)
    terms = [_Term(neuron2, conv2, f"{path}.conv2")]
    if isinstance(block.shortcut, nn.Identity):
        if len(parts) > 1:  # the U-Net layout never makes one; refuse rather than guess
            raise SddpmError(f"cannot export {path}.shortcut: an identity shortcut over a "
                             "concatenation is not supported")
        return _Stream(terms + parts[0].terms, _conv_out(shape, conv2))  # passes as it is
    _check_conv(block.shortcut, f"{path}.shortcut", pointwise=True)
    shortcut = split_input_channels(conv_map(block.shortcut), sizes)
    for k, (part, outer) in enumerate(zip(parts, shortcut)):
        terms += _pointwise(part, outer, f"{path}.shortcut{suffix(k)}")
    return _Stream(terms, _conv_out(shape, conv2))


def _identity_map(channels: int) -> ConvMap:
    """A population's spikes as a stream term: one unit synapse per neuron (1x1)."""
    return ConvMap(np.eye(channels).reshape(channels, channels, 1, 1), np.zeros(channels))


def _standard_block(b: _Builder, block: StandardSpikingResBlock, path: str,
                    parts: list[_Stream], hw: dict, temb: torch.Tensor | None) -> _Stream:
    """The ablation's block: its output stream is two populations' spikes, each through
    unit synapses, so the next population sums the two spike trains on its fan-in."""
    _check_res_layers(block, path, ("neuron0", "neuron1", "neuron2"),
                      (nn.Sequential, nn.Identity))
    pops = _population_parts(b, parts, f"{path}.neuron0", f"{path}.neuron0", hw)
    sizes = [p.shape[0] for p in parts]
    suffix = _suffixes(parts)
    neuron1, shape = _first_conv(b, block, path, parts, pops, hw, temb, "neuron1")
    conv2 = fold_batchnorm_module(conv_map(block.conv2), block.bn2)
    out_shape = _conv_out(shape, conv2)
    neuron2 = b.population(f"{path}.neuron2", f"{path}.neuron2", out_shape, (0, out_shape[0]))
    b.feed(_Stream([_Term(neuron1, conv2, f"{path}.conv2")], out_shape), neuron2, hw)
    hw[neuron2] = out_shape[1:]
    unit = _identity_map(out_shape[0])
    terms = [_Term(neuron2, unit, f"{path}.out")]
    if isinstance(block.shortcut, nn.Identity):
        if len(parts) > 1:  # the U-Net layout never makes one; refuse rather than guess
            raise SddpmError(f"cannot export {path}.shortcut: an identity shortcut over a "
                             "concatenation is not supported")
        return _Stream(terms + [_Term(pops[0], unit, f"{path}.shortcut")], out_shape)
    layers = list(block.shortcut)
    if len(layers) != 3:
        raise SddpmError(f"cannot export {path}.shortcut: expected 1x1 conv, BatchNorm, IF")
    for k, kind in enumerate((nn.Conv2d, nn.BatchNorm2d, MultiStepIF)):
        _check(layers[k], f"{path}.shortcut.{k}", (kind,))
    _check_conv(layers[0], f"{path}.shortcut.0", pointwise=True)
    maps = split_input_channels(fold_batchnorm_module(conv_map(layers[0]), layers[1]), sizes)
    spikes = b.population(f"{path}.shortcut.2", f"{path}.shortcut.2", out_shape,
                          (0, out_shape[0]))
    b.feed(_Stream([_Term(pop, m, f"{path}.shortcut.0{suffix(k)}")
                    for k, (pop, m) in enumerate(zip(pops, maps))], out_shape), spikes, hw)
    hw[spikes] = out_shape[1:]
    return _Stream(terms + [_Term(spikes, unit, f"{path}.shortcut")], out_shape)


def _resample_block(b: _Builder, block: nn.Module, path: str, stream: _Stream,
                    hw: dict) -> _Stream:
    _check(block.neuron, f"{path}.neuron", (MultiStepIF,))
    _check(block.conv, f"{path}.conv", (nn.Conv2d,))
    _check(block.bn, f"{path}.bn", (nn.BatchNorm2d,))
    (pop,) = _population_parts(b, [stream], f"{path}.neuron", f"{path}.neuron", hw)
    source, shape = pop, stream.shape
    if isinstance(block, SpikingUpsample):
        up = block.upsample
        factor = getattr(up, "scale_factor", None)
        if isinstance(factor, (tuple, list)) and len(set(factor)) == 1:
            factor = factor[0]
        if not (isinstance(up, nn.Upsample) and up.mode == "nearest"
                and isinstance(factor, (int, float)) and float(factor) == int(factor) >= 1):
            raise SddpmError(f"cannot export {path}.upsample: only nearest-neighbour "
                             f"upsampling by one integer factor maps to sddpm.Upsample2d")
        s = int(factor)
        source = b.add(f"{path}.upsample", Upsample2d(input_shape=np.array(shape),
                                                      scale_factor=np.array([s, s])))
        b.edges.append((pop, source))
        shape = (shape[0], shape[1] * s, shape[2] * s)
        hw[source] = shape[1:]
    m = fold_batchnorm_module(conv_map(block.conv), block.bn)
    return _Stream([_Term(source, m, f"{path}.conv")], _conv_out(shape, m))


def _block(b: _Builder, block: nn.Module, path: str, parts: list[_Stream], hw: dict,
           temb) -> _Stream:
    if isinstance(block, PreSpikeResBlock):
        return _res_block(b, block, path, parts, hw, temb)
    if isinstance(block, StandardSpikingResBlock):
        return _standard_block(b, block, path, parts, hw, temb)
    if isinstance(block, (SpikingDownsample, SpikingUpsample)):
        return _resample_block(b, block, path, parts[0], hw)
    raise SddpmError(f"cannot export {path}: it is a {type(block).__name__}; the NIR exporter "
                     "knows PreSpikeResBlock, StandardSpikingResBlock, SpikingDownsample and "
                     "SpikingUpsample blocks")


def is_host_module(name: str) -> bool:
    """Host side: encoding conv + BN, time embedding, projections, decoder."""
    return f"{name}.".startswith(HOST_PREFIXES) or ".temb_proj." in f"{name}."


def is_host_parameter(name: str, tensor: torch.Tensor) -> bool:
    """A host module's tensor (no 0-d counters)."""
    return is_host_module(name.rsplit(".", 1)[0]) and tensor.dim() > 0


def host_parameters(model: SpikingUNet, dtype) -> dict:
    """The host side's tensors, as numpy arrays of ``dtype``."""
    return {name: tensor.detach().cpu().numpy().astype(dtype)
            for name, tensor in model.state_dict().items() if is_host_parameter(name, tensor)}


@torch.no_grad()
def export_nir(model: nn.Module, *, diffusion_step: int | None = None,
               dtype=np.float64) -> nir.NIRGraph:
    """The chip part of a trained Spiking U-Net as a NIR graph (see the module docstring).

    Parameters
    ----------
    model : SpikingUNet
        In eval mode its BatchNorm statistics are folded; thresholds are read per IF layer.
    diffusion_step : int, optional
        Export for this one diffusion step t: the time embedding folds into biases and the
        graph has a single ``Input``. ``None`` (default) keeps ``temb:<block>`` inputs.
    dtype : numpy dtype
        Of the weights written (float64 reproduces a float64 model exactly).
    """
    if not isinstance(model, SpikingUNet):
        raise SddpmError(f"only the Spiking U-Net exports to NIR; this is a "
                         f"{type(model).__name__} (the ANN twin has no spiking layers)")
    was_training = model.training
    model.eval()
    try:
        return _export(model, diffusion_step, dtype)
    finally:
        model.train(was_training)


def _time_embedding_at(model: SpikingUNet, step: int) -> torch.Tensor:
    """``temb(t)`` in float64 on a copy: the caller's model keeps its dtype."""
    embedding = copy.deepcopy(model.time_embedding).double()
    return embedding(torch.tensor([step]))


def _export(model: SpikingUNet, diffusion_step, dtype) -> nir.NIRGraph:
    config = model.config
    thresholds = {n: m.threshold for n, m in model.named_modules() if isinstance(m, MultiStepIF)}
    rules = {m.fires_on for m in model.modules() if isinstance(m, MultiStepIF)}
    if len(rules) != 1:
        raise SddpmError(f"the IF layers fire on different rules {sorted(rules)}; one rule per "
                         "model exports")
    (fires_on,) = rules
    b = _Builder(np.dtype(dtype), thresholds, fires_on)
    hw: dict = {}
    _check(model.encoder.neuron, "encoder.neuron", (MultiStepIF,))
    shape = (config.ch, config.image_size, config.image_size)
    b.add("input", nir.Input(input_type=np.array(shape)))
    pop = b.population("encoder.neuron", "encoder.neuron", shape, (0, shape[0]))
    b.edges.append(("input", pop))
    hw[pop] = shape[1:]
    encoder = fold_batchnorm_module(conv_map(model.encoder.conv2), model.encoder.bn2)
    stream = _Stream([_Term(pop, encoder, "encoder.conv2")], _conv_out(shape, encoder))
    temb = None if diffusion_step is None else _time_embedding_at(model, diffusion_step)
    skips = [stream]
    for i, block in enumerate(model.down):
        stream = _block(b, block, f"down.{i}", [stream], hw, temb)
        skips.append(stream)
    for i, block in enumerate(model.middle):
        stream = _block(b, block, f"middle.{i}", [stream], hw, temb)
    for i, (block, spec) in enumerate(zip(model.up, model.up_specs)):
        parts = [stream, skips.pop()] if spec.kind == "res" else [stream]
        stream = _block(b, block, f"up.{i}", parts, hw, temb)
    b.add("stream", nir.Output(output_type=np.array(stream.shape)))
    b.feed(stream, "stream", hw)
    info = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_config": config.to_dict(),
        "timesteps": config.timesteps, "fires_on": fires_on,
        "neuron_convention": NEURON_CONVENTION if fires_on == ">" else
        f"{NEURON_CONVENTION}; {STRICT_FROM_GE}",
        "diffusion_step": diffusion_step, "dtype": np.dtype(dtype).name,
        "populations": b.populations,
        "inputs": {"input": {"shape": list(shape), "what": "BN(conv(x_t)) of the encoder, "
                             "the same every spiking timestep"},
                   "temb": b.temb_inputs},
        "outputs": {"stream": {"shape": list(stream.shape),
                               "what": "analog stream into the decoding head, per timestep"}},
        "extensions": sorted({type(n).__name__ for n in b.nodes.values()
                              if isinstance(n, Upsample2d)}),
    }
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, type_check=False,
                        metadata={"sddpm": json.dumps(info),
                                  "host": host_parameters(model, dtype)})
