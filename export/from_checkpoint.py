"""From a trained checkpoint to a NIR file or a Lava bundle: what ``sddpm-export`` does.

Keyword arguments in, a summary dict out; the command line (:mod:`.cli`) only parses
and prints.
"""

from __future__ import annotations

import time
from pathlib import Path

from sddpm.errors import SddpmError
from sddpm.files import readable_file
from sddpm.outputs import writable_file, writable_folder

DTYPES = ("float32", "float64")


CHECKPOINT_HINT = "give a checkpoint written by 'sddpm train' or 'sddpm convert'"


def _nir_path(checkpoint, output) -> Path:
    readable_file(checkpoint, "checkpoint", CHECKPOINT_HINT)  # before anything resolves it
    path = Path(output) if output else Path(checkpoint).with_suffix(".nir")
    if path.resolve() == Path(checkpoint).resolve():
        raise SddpmError(f"output {path} is the checkpoint itself; give another -o")
    return writable_file(path, (".nir",))


def export_to_nir(checkpoint, *, output=None, diffusion_step: int | None = None,
                  dtype: str = "float32", use_ema: bool = True,
                  threshold: float | None = None) -> dict:
    """Write the NIR file of a spiking checkpoint; returns its summary.

    ``output`` defaults to the checkpoint with the suffix ``.nir``; ``diffusion_step``
    folds that step's time embedding into biases (a single ``Input``); ``threshold``
    exports every IF neuron with that threshold (threshold guidance).
    """
    import numpy as np
    import torch

    from sddpm.export.nir_file import write_nir
    from sddpm.export.summary import graph_summary, host_macs
    from sddpm.export.torch_to_nir import export_nir
    from sddpm.sampling import model_from_checkpoint

    if dtype not in DTYPES:
        raise SddpmError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = _nir_path(checkpoint, output)
    model, payload = model_from_checkpoint(checkpoint, use_ema=use_ema, threshold=threshold)
    if payload["arch"] != "snn":
        raise SddpmError(f"{checkpoint} holds an ANN; only spiking models export to NIR")
    steps = model.config.diffusion_steps
    if diffusion_step is not None and not 0 <= diffusion_step < steps:
        raise SddpmError(f"--diffusion-step must lie in [0, {steps - 1}], got "
                         f"{diffusion_step}")
    t0 = time.perf_counter()
    graph = export_nir(model.to(torch.float64), diffusion_step=diffusion_step,
                       dtype=np.dtype(dtype))
    write_nir(graph, out)
    summary = {"checkpoint": str(checkpoint), "output": str(out),
               "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
               "diffusion_step": diffusion_step, "dtype": dtype,
               "threshold": threshold, "checkpoint_integrity": payload["integrity"],
               **graph_summary(graph),
               "host_macs_per_forward": host_macs(model, diffusion_step is None)}
    return summary


def _bundle_folder(checkpoint, output) -> Path:
    readable_file(checkpoint, "checkpoint", CHECKPOINT_HINT)
    ckpt = Path(checkpoint)
    path = Path(output) if output else ckpt.with_name(ckpt.stem + "-lava")
    return writable_folder(path, "bundle")


def lava_process_counts(graph, schedule) -> dict:
    """The Lava processes a bundle becomes (without building them)."""
    import nir

    from sddpm.export.graph import neighbours
    from sddpm.export.nir_file import Upsample2d

    convs = schedule.conv_instances()
    preds, _ = neighbours(graph)
    lines = {(preds[conv][0], wait) for conv, wait in convs if wait > 0}
    counts = {
        "lif": sum(isinstance(n, nir.IF) for n in graph.nodes.values()),
        "conv": len(convs), "delay_lines": len(lines),
        "upsample": sum(isinstance(n, Upsample2d) for n in graph.nodes.values()),
        "injectors": len(graph.inputs), "extractors": len(graph.outputs),
    }
    counts["total"] = sum(counts.values())
    return counts


def export_to_lava(checkpoint, *, output=None, weight_bits: int = 8, use_ema: bool = True,
                   threshold: float | None = None, dtype: str = "float32") -> dict:
    """Write the Lava bundle of a spiking checkpoint (see :mod:`.lava_bundle`); returns
    its summary. ``output`` defaults to the checkpoint's name without suffix + ``-lava``.

    ``dtype`` is what the graph's arrays are stored in: float32, the precision the
    model was trained in (half the file of float64; the reference executor and Lava
    still compute in float64), or float64, which keeps the folded batch norms to the
    last bit, for a check against the torch model run in float64 at its thresholds.
    """
    import numpy as np
    import torch

    from sddpm.export.latency import balance
    from sddpm.export.lava_bundle import write_bundle
    from sddpm.export.torch_to_nir import export_nir
    from sddpm.files import file_sha256
    from sddpm.sampling import model_from_checkpoint

    if dtype not in DTYPES:
        raise SddpmError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not 2 <= weight_bits <= 8:
        raise SddpmError(f"--weight-bits must lie in [2, 8] (Loihi 2's synapses hold 8), "
                         f"got {weight_bits}")
    model, payload = model_from_checkpoint(checkpoint, use_ema=use_ema, threshold=threshold)
    if payload["arch"] != "snn":
        raise SddpmError(f"{checkpoint} holds an ANN; only spiking models deploy to Lava")
    folder = _bundle_folder(checkpoint, output)
    t0 = time.perf_counter()
    # folded in float64, stored in dtype
    graph = export_nir(model.to(torch.float64), dtype=np.dtype(dtype))
    bundle = write_bundle(graph, folder, weight_bits=weight_bits, source={
        "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint),
        "step": payload["step"], "preset": model.config.name, "ema": use_ema,
        "threshold": threshold, "dtype": dtype})
    schedule = balance(graph)
    import json

    from sddpm.export.lava_bundle import MANIFEST

    manifest = json.loads((bundle / MANIFEST).read_text())
    return {"checkpoint": str(checkpoint), "checkpoint_integrity": payload["integrity"],
            "output": str(folder), "dtype": dtype, "bytes": {name: entry["bytes"] for name, entry
                                             in manifest["files"].items()},
            "loihi2_resources": manifest["loihi2_resources"],
            "seconds": round(time.perf_counter() - t0, 2), "weight_bits": weight_bits,
            "latency_steps": schedule.latency(),
            "steps_per_forward": schedule.steps_per_forward(model.config.timesteps),
            "processes": lava_process_counts(graph, schedule)}
