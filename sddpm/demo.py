"""``sddpm demo``: the main job on the shipped default, end to end on a CPU.

Today: a short training run of the CPU preset on real Fashion-MNIST (the bundled
digits when Fashion-MNIST is not installed), a sample grid from it, a sample grid
from the shipped trained model when the repository carries one, and the energy
report of the shipped model (the brief one without it). Every output goes to one
folder; a summary is printed at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sddpm.checkpoint import SHIPPED_CHECKPOINT as SHIPPED
from sddpm.data import DEBIAN_FASHION_MNIST
from sddpm.diffusion import GaussianDiffusion
from sddpm.models import count_params
from sddpm.presets import ModelConfig
from sddpm.sampling import model_from_checkpoint, sample_images, save_grid
from sddpm.train import TrainConfig, Trainer


def _grid_from(checkpoint: Path, out: Path, n: int, steps: int) -> dict:
    model, payload = model_from_checkpoint(checkpoint)
    config = ModelConfig.from_dict(payload["model_config"])
    t0 = time.perf_counter()
    images = sample_images(model, GaussianDiffusion(config.diffusion_steps), config, n=n,
                           sampler="ddim", steps=steps, seed=0)
    return {"checkpoint": str(checkpoint), "grid": str(save_grid(images, out)),
            "preset": config.name, "arch": payload["arch"], "trained_steps": payload["step"],
            "params": count_params(model), "sampler": f"ddim-{steps}",
            "sample_seconds": round(time.perf_counter() - t0, 1)}


def _energy_of(checkpoint: Path, out: Path, steps: int = 20) -> dict:
    # the energy model lives beside the model side, not in it; imported only here
    from hardware.energy import energy_report
    from hardware.energy_cli import profile_checkpoint, write_outputs
    from hardware.hardware_profiles import load_profile

    profile = profile_checkpoint(checkpoint, sampler="ddim", steps=steps, n=4)
    report = energy_report(profile, load_profile("45nm-fp32"), "paper")
    write_outputs(out, profile, report)
    strict = energy_report(profile, load_profile("45nm-fp32"), "strict")
    return {"checkpoint": str(checkpoint), "folder": str(out), "sampler": f"ddim-{steps}",
            "hardware": report.hardware, "paper_mJ_per_forward": round(report.per_forward_mj, 4),
            "paper_mJ_per_image": round(report.per_image_mj, 3),
            "strict_mJ_per_image": round(strict.per_image_mj, 3)}


def run_demo(out: str | Path, train_steps: int = 100) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    have_fmnist = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
    preset = "fmnist-small" if have_fmnist else "tiny"
    train_dir = out / "train"
    config = TrainConfig(preset=preset, steps=train_steps, ckpt_every=max(1, train_steps // 2),
                         sample_every=10 ** 9, warmup=20, out=str(train_dir))
    t0 = time.perf_counter()
    trainer = Trainer(config, resume=(train_dir / "last.pt").exists())
    loss = trainer.run()
    summary = {"train": {"preset": preset, "steps": trainer.step, "last_loss": round(loss, 4),
                         "seconds": round(time.perf_counter() - t0, 1),
                         "checkpoint": str(train_dir / "last.pt")}}
    summary["brief_model"] = _grid_from(train_dir / "last.pt", out / "brief_model_grid.png",
                                        n=16, steps=20)
    if SHIPPED.exists():
        summary["shipped_model"] = _grid_from(SHIPPED, out / "shipped_model_grid.png",
                                              n=64, steps=50)
    summary["energy"] = _energy_of(SHIPPED if SHIPPED.exists() else train_dir / "last.pt",
                                   out / "energy")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
