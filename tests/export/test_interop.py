"""Other executors of the exported graphs: nirtorch's interpreter and Norse's ``from_nir``.

Norse 1.1.0 imports through nirtorch's older ``GraphExecutor``, which runs nodes in
depth-first pre-order from the first Input. A node reached through one branch before
its other fan-in branch has run reads that branch's value from the previous timestep.
Every up block of the U-Net is such a diamond (the split population feeds conv1 and the
composed shortcut, which meet again), so the default order computes another network;
in a topological order Norse's IAF neurons reproduce the export spike for spike.
"""

import warnings

import nir
import pytest
import torch

from sddpm.errors import SddpmError
from sddpm.export.executor import HostSide, NirExecutor, nirtorch_module
from sddpm.export.graph import topological_order
from sddpm.export.nir_file import read_nir, write_nir
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset

STEP = 37


def _graph(preset, tmp_path, diffusion_step=STEP):
    torch.manual_seed(0)
    model = build_model(get_preset(preset), "snn").double().eval()
    return write_nir(export_nir(model, diffusion_step=diffusion_step), tmp_path / "g.nir")


def _reference(graph, batch=2):
    host = HostSide(graph)
    config = host.config
    x = torch.randn(batch, config.image_channels, config.image_size, config.image_size,
                    generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    feeds = host.inputs(x, torch.full((batch,), STEP))
    outputs, spikes = NirExecutor(graph).run(feeds, config.timesteps)
    return feeds["input"], outputs["stream"], spikes, config.timesteps


def _norse(path):
    import norse.torch as norse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice for nirtorch.load
        return norse.from_nir(nir.read(path), dt=1.0).double()


def _run_norse(net, current, T):
    spikes, hooks = {}, []
    for node in net.graph.node_list:
        if type(node.elem).__name__ == "IAFCell":
            hooks.append(node.elem.register_forward_hook(
                lambda m, i, o, name=node.name: spikes.setdefault(name, []).append(o[0])))
    state, outs = None, []
    with torch.no_grad():
        for _ in range(T):
            out, state = net(current, state)
            outs.append(out)
    for h in hooks:
        h.remove()
    return torch.stack(outs), {k: torch.stack(v) for k, v in spikes.items()}


def test_norse_reproduces_the_spikes_in_topological_order(tmp_path):
    path = _graph("digits-flat", tmp_path)
    graph = read_nir(path)
    current, stream, spikes, T = _reference(graph)
    net = _norse(path)
    by_name = {node.name: node for node in net.graph.node_list}
    net.execution_order = [by_name[n.replace(".", "_")] for n in topological_order(graph)]
    out, norse_spikes = _run_norse(net, current, T)
    assert len(norse_spikes) == len(spikes)
    for name, s in spikes.items():
        assert torch.equal(norse_spikes[name.replace(".", "_")], s), name
    # Norse holds the weights in float32: the analog stream agrees to that precision
    torch.testing.assert_close(out, stream, rtol=1e-6, atol=1e-6)


def test_norse_default_order_runs_fan_in_before_its_inputs(tmp_path):
    path = _graph("digits-flat", tmp_path)
    graph = read_nir(path)
    current, stream, _, T = _reference(graph)
    net = _norse(path)
    position = {node.name: i for i, node in enumerate(net.execution_order)}
    early = [(a, b) for a, b in graph.edges
             if position[a.replace(".", "_")] > position[b.replace(".", "_")]]
    assert early, "the depth-first order became topological: update the docs and notes"
    out, _ = _run_norse(net, current, T)
    assert not torch.allclose(out, stream, atol=1e-3)


def test_nirtorch_interpreter_runs_a_single_input_export(tmp_path):
    graph = read_nir(_graph("tiny", tmp_path))  # with the sddpm.Upsample2d extension
    current, stream, _, T = _reference(graph)
    module = nirtorch_module(graph)
    state, outs = None, []
    with torch.no_grad():
        for _ in range(T):
            out, state = module(current, state)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs), stream, rtol=1e-12, atol=1e-12)


def test_nirtorch_needs_a_single_input(tmp_path):
    graph = read_nir(_graph("tiny", tmp_path, diffusion_step=None))
    with pytest.raises(SddpmError, match="one Input only.*--diffusion-step"):
        nirtorch_module(graph)
