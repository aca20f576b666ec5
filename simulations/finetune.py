"""``sddpm finetune --fixed-point BUNDLE``: quantisation-aware fine-tuning of a deployment.

Trains the chip's conv weights through the fixed-point emulation itself: every step the
float ("shadow") weights are quantised at the bundle's scales with SLAYER's ``quantize``
(a straight-through estimator), the integer network runs on SLAYER's CUBA neurons (whose
spike function has a surrogate gradient), and the host decodes the stream; the loss is
DDPM's epsilon-MSE on the training data. Scales, thresholds, biases and the host side
stay as deployed, so the forward pass is exactly what Lava ``fixed_pt`` computes: at
step 0 the fine-tuned bundle equals the input bundle bit for bit (``tests``).

The result is a new bundle: the shadow weights as its float graph, their integers at the
same scales as its fixed-point parameters. Loss on a fixed probe set (same images, t and
noise) before and after, and the float graph's, is in ``finetune.json``, the loss curve in ``finetune.csv``
and ``finetune.png``.
"""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path

import nir
import numpy as np
import torch

from sddpm.errors import SddpmError
from sddpm.export.executor import ExportedNoisePredictor
from sddpm.export.graph import neighbours
from sddpm.export.nir_file import graph_info
from sddpm.export.quantize import FixedPointNetwork
from sddpm.files import atomic_path, save_figure, write_json
from sddpm.simulations.fixed_emulator import FixedPointNoisePredictor, _slayer_cuba

PROBE_SIZE = 64


class QuantisationAwareNetwork(torch.nn.Module):
    """The fixed-point deployment with trainable float weights: ``(x_t, t) -> eps``."""

    def __init__(self, graph: nir.NIRGraph, fixed: FixedPointNetwork):
        super().__init__()
        self.graph, self.fixed = graph, fixed
        # the deployment's own host encoding, emulation and decoding; only weights differ
        self.deployment = FixedPointNoisePredictor(graph, fixed)
        self.emulator = self.deployment.emulator
        self.host = self.deployment.host  # float64 and frozen, as the deployment's host
        _, succs = neighbours(graph)
        self.convs = sorted(fixed.weights)
        # one scale per conv: its targets share one (see export.quantize.scale_groups)
        self.scales = [fixed.scale[succs[c][0]] for c in self.convs]
        self.shadow = torch.nn.ParameterList(
            # float64, as exported: round(W s) must give the deployed integers exactly
            torch.nn.Parameter(torch.as_tensor(np.asarray(graph.nodes[c].weight),
                                               dtype=torch.float64)) for c in self.convs)
        for c, p in zip(self.convs, self.shadow):
            if p.shape[2:] == (1, 1):
                # a 1x1 map keeps its synapses where they are (the standard block's unit
                # maps stay one synapse per neuron): its zero weights get no gradient
                mask = (p.detach() != 0).to(p.dtype)
                p.register_hook(lambda grad, mask=mask: grad * mask)
        self.w_max = 2 ** (fixed.weight_bits - 1) - 1
        self.quantize = _slayer_quantize()

    def integer_weights(self) -> dict:
        """The shadow weights at the deployed scales, rounded (straight through) and clipped."""
        dtype = self.emulator.dtype  # integers up to 127: exact in it
        return {c: self.quantize(w * s).clamp(-self.w_max, self.w_max).to(dtype)
                for c, w, s in zip(self.convs, self.shadow, self.scales)}

    def train(self, mode: bool = True):
        """Only the shadow weights train: the host side (its BatchNorm) stays deployed."""
        super().train(mode)
        self.host.eval()
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        inputs = self.deployment.integer_inputs(x.double(), t)
        outputs, _ = self.emulator.forward(inputs, self.host.config.timesteps,
                                           self.integer_weights())
        return self.deployment.decode(outputs[self.deployment.output]).to(x.dtype)

    def deployed(self) -> tuple[nir.NIRGraph, FixedPointNetwork]:
        """The fine-tuned graph (shadow weights) and its integers at the same scales."""
        graph = copy.deepcopy(self.graph)
        fixed = copy.deepcopy(self.fixed)
        with torch.no_grad():
            for (c, w), shadow in zip(self.integer_weights().items(), self.shadow):
                node = graph.nodes[c]
                node.weight = shadow.detach().double().numpy().astype(node.weight.dtype)
                fixed.weights[c] = w.round().to(torch.int32).numpy()
        return graph, fixed


def _slayer_quantize():
    _slayer_cuba()  # lava-dl's quiet import
    from lava.lib.dl.slayer.utils import quantize

    return quantize


def _probe(data, diffusion, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(data), generator=g)[:PROBE_SIZE].numpy()
    x0 = data.batch(idx)
    t = torch.randint(diffusion.num_steps, (len(idx),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    return diffusion.q_sample(x0, t, eps), t, eps


def _probe_loss(model, probe, batch: int) -> float:
    x_t, t, eps = probe
    with torch.no_grad():
        losses = [torch.nn.functional.mse_loss(model(x_t[i:i + batch], t[i:i + batch]),
                                               eps[i:i + batch], reduction="sum")
                  for i in range(0, len(t), batch)]
    return float(sum(losses) / eps.numel())


def finetune(bundle, out, *, steps: int, lr: float, batch: int, seed: int = 0,
             data_dir=None, progress: bool = True) -> dict:
    """Fine-tune a bundle's fixed-point network; write the new bundle to ``out``."""
    from tqdm import tqdm

    from sddpm.data import load_dataset
    from sddpm.diffusion import GaussianDiffusion
    from sddpm.export.lava_bundle import load_bundle, load_fixed_point, write_bundle
    from sddpm.outputs import writable_folder
    from sddpm.presets import ModelConfig

    graph, manifest = load_bundle(bundle)
    if Path(out).resolve() == Path(bundle).resolve():
        raise SddpmError(f"--out {out} is the input bundle; fine-tune into a new folder")
    fixed = load_fixed_point(bundle, graph, manifest)
    if graph_info(graph)["diffusion_step"] is not None:
        raise SddpmError("this bundle was exported for one diffusion step; fine-tuning trains "
                         "over all steps: export without --diffusion-step")
    config = ModelConfig.from_dict(manifest["model_config"])
    data = load_dataset(config.dataset, image_size=config.image_size, data_dir=data_dir)
    writable_folder(out, "--out")  # checked before the work, created once the inputs are
    diffusion = GaussianDiffusion(config.diffusion_steps)
    torch.manual_seed(seed)
    model = QuantisationAwareNetwork(graph, fixed)
    optimiser = torch.optim.Adam(model.shadow.parameters(), lr=lr)
    probe = _probe(data, diffusion, seed)
    before = _probe_loss(model, probe, batch)
    float_graph = ExportedNoisePredictor(graph)
    float_loss = _probe_loss(lambda x, t: float_graph(x.double(), t)[0].float(), probe, batch)
    generator = torch.Generator().manual_seed(seed)
    losses, t0 = [], time.perf_counter()
    for step in tqdm(range(steps), desc="fine-tune (fixed point)", disable=not progress):
        idx = torch.randint(len(data), (batch,), generator=generator).numpy()
        loss = diffusion.loss(model, data.batch(idx), generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    seconds = time.perf_counter() - t0
    after = _probe_loss(model, probe, batch)
    tuned_graph, tuned_fixed = model.deployed()
    source = dict(manifest["source"], finetuned_from=str(bundle), finetune_steps=steps,
                  finetune_lr=lr, finetune_batch=batch, finetune_seed=seed)
    folder = write_bundle(tuned_graph, out, source=source, fixed=tuned_fixed)
    changed = sum(int((tuned_fixed.weights[c] != fixed.weights[c]).sum()) for c in fixed.weights)
    report = {"bundle": str(bundle), "out": str(folder), "steps": steps, "lr": lr,
              "batch": batch, "seed": seed, "weight_bits": fixed.weight_bits,
              "seconds": round(seconds, 1),
              "probe_images": PROBE_SIZE, "probe_loss_before": before, "probe_loss_after": after,
              "probe_loss_float": float_loss,
              "integer_weights_changed": changed,
              "integer_weights": sum(w.size for w in fixed.weights.values())}
    _write_outputs(folder, report, losses)
    return report


def _write_outputs(folder: Path, report: dict, losses: list) -> None:
    from matplotlib.figure import Figure

    write_json(folder / "finetune.json", report)
    with atomic_path(folder / "finetune.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(enumerate(losses))
    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    ax.plot(losses, alpha=0.4, label="batch loss")
    if len(losses) >= 10:
        k = max(len(losses) // 20, 5)
        ax.plot(np.arange(k - 1, len(losses)), np.convolve(losses, np.ones(k) / k, "valid"),
                label=f"mean of {k}")
    ax.axhline(report["probe_loss_before"], color="k", ls="--", label="probe, before")
    ax.axhline(report["probe_loss_after"], color="g", ls="--", label="probe, after")
    ax.axhline(report["probe_loss_float"], color="0.5", ls=":", label="probe, float graph")
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE (fixed point)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, folder / "finetune.png", dpi=110)
