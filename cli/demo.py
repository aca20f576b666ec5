"""``sddpm demo``: the main job on the shipped default, end to end on a CPU.

A short training run of the CPU preset on real Fashion-MNIST (the bundled digits when
Fashion-MNIST is not installed) with a sample grid; a sample grid from the shipped
trained model; its energy report; its NIR export and Lava bundle; a few DDIM
denoising steps of it simulated in Lava, compared with torch; and one in Lava's fixed
point, compared with the fixed-point emulation and with the float model. Every output goes to one
folder; a summary is printed at the end. It lives on the top floor, with the command
line, because it runs the whole chain: model, export, Lava, energy.
"""

from __future__ import annotations

import time
from pathlib import Path

from sddpm.checkpoint import SHIPPED_CHECKPOINT as SHIPPED
from sddpm.data import DEBIAN_FASHION_MNIST
from sddpm.files import write_json
from sddpm.models import count_params
from sddpm.sampling import sample_checkpoint, save_grid
from sddpm.train import TrainConfig, Trainer


def _grid_from(checkpoint: Path, out: Path, n: int, steps: int) -> dict:
    t0 = time.perf_counter()
    images, model, payload = sample_checkpoint(checkpoint, n=n, sampler="ddim", steps=steps,
                                               seed=0)
    return {"checkpoint": str(checkpoint), "grid": str(save_grid(images, out)),
            "preset": model.config.name, "arch": payload["arch"],
            "trained_steps": payload["step"],
            "params": count_params(model), "sampler": f"ddim-{steps}",
            "sample_seconds": round(time.perf_counter() - t0, 1)}


def _energy_of(checkpoint: Path, out: Path, steps: int = 20) -> dict:
    from sddpm.hardware.energy import energy_report
    from sddpm.hardware.hardware_costs import load_hardware_costs
    from sddpm.hardware.profiler import profile_checkpoint
    from sddpm.hardware.reports import write_outputs

    fp32 = load_hardware_costs("45nm-fp32")
    profile = profile_checkpoint(checkpoint, sampler="ddim", steps=steps, n=4)
    report = energy_report(profile, fp32, "paper")
    write_outputs(out, profile, report)
    strict = energy_report(profile, fp32, "strict")
    return {"checkpoint": str(checkpoint), "folder": str(out), "sampler": f"ddim-{steps}",
            "hardware": report.hardware, "paper_mJ_per_forward": round(report.per_forward_mj, 4),
            "paper_mJ_per_image": round(report.per_image_mj, 3),
            "strict_mJ_per_image": round(strict.per_image_mj, 3)}


def _deploy(checkpoint: Path, out: Path, denoise_steps: int, fixed_point_steps: int) -> dict:
    """NIR file, Lava bundle, and DDIM steps simulated in Lava: ``denoise_steps`` in
    floating point against torch, ``fixed_point_steps`` in fixed point against the
    emulation."""
    from sddpm.export.from_checkpoint import export_to_lava, export_to_nir
    from sddpm.hardware.deployed import DeployedEnergy
    from sddpm.simulations.simulate import run_simulation

    nir = export_to_nir(checkpoint, output=out / "model.nir", dtype="float32")
    # float64: the float run is compared with the torch model in float64, spike for spike
    bundle = export_to_lava(checkpoint, output=out / "lava-bundle", weight_bits=8,
                            dtype="float64")
    chip_energy = DeployedEnergy("45nm-fp32", "paper")

    def simulate(fixed_point: bool, steps: int, folder: str) -> dict:
        return run_simulation(bundle["output"], out=out / folder, denoise_steps=steps, n=1,
                              seed=0, fixed_point=fixed_point, checkpoint=checkpoint,
                              chip_energy=chip_energy)

    sim = simulate(False, denoise_steps, "simulate")
    fixed = simulate(True, fixed_point_steps, "simulate-fixed-point")
    return {"nir": nir["output"], "nir_nodes": nir["nodes"], "nir_edges": nir["edges"],
            "bundle": bundle["output"], "lava_processes": bundle["processes"]["total"],
            "latency_steps": bundle["latency_steps"], "denoise_steps": sim["denoise_steps"],
            "worst_spike_agreement": sim["worst_spike_agreement"],
            "max_eps_rel_error": sim["max_eps_rel_error"],
            "seconds_per_lava_step": round(sim["seconds_per_lava_step"], 3),
            "simulate_wall_s": sim["wall_s"], "folder": str(out / "simulate"),
            "fixed_point": {"denoise_steps": fixed["denoise_steps"],
                            "weight_bits": fixed["weight_bits"],
                            "spike_mismatches": fixed["spike_mismatches"],
                            "reference_spikes": fixed["reference_spikes"],
                            "eps_rel_error_vs_float":
                                max(fixed["against_float"]["eps_rel_error"]),
                            "folder": str(out / "simulate-fixed-point")}}


def run_demo(out: str | Path, train_steps: int = 100, denoise_steps: int = 2,
             fixed_point_steps: int = 1) -> dict:
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
    model = SHIPPED if SHIPPED.exists() else train_dir / "last.pt"
    summary["energy"] = _energy_of(model, out / "energy")
    summary["deployment"] = _deploy(model, out / "deploy", denoise_steps, fixed_point_steps)
    write_json(out / "summary.json", summary)
    return summary
