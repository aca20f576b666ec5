"""Training loop: epsilon-MSE with Adam, gradient clipping, EMA, NaN guard, resumable.

The EMA that checkpoints and sample grids carry has BatchNorm statistics measured for
its own weights (:mod:`sddpm.batch_norm`): a copy of the running EMA, recalibrated
on training images whenever one is written, with a generator of its own.

Every random choice of step ``s`` (batch, flips, t, noise, dropout) comes from a
generator seeded by ``(seed, s, rank)``, and the checkpoint holds model, optimizer,
EMA, step and RNG state; so a run resumed from its checkpoint after a crash follows
the same trajectory as one never interrupted. Multi-GPU runs start under ``torchrun``
(PyTorch DDP, NCCL on GPUs, gloo on CPUs); only rank 0 writes files.
"""

from __future__ import annotations

import copy
import csv
import math
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from sddpm.batch_norm import RECALIBRATION_KEY, Recalibration, recalibrate_batch_norm
from sddpm.checkpoint import (
    check_against_model,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from sddpm.data import load_dataset
from sddpm.diffusion import GaussianDiffusion
from sddpm.distributed import init_distributed
from sddpm.errors import SddpmError
from sddpm.files import atomic_path, write_json
from sddpm.models import build_model
from sddpm.neurons import check_backend
from sddpm.presets import BLOCKS, ModelConfig, check_arch, get_preset
from sddpm.sampling import sample_images, save_grid

# datasets whose images stay meaningful when mirrored
FLIP_DATASETS = {"cifar10", "celeba", "lsun", "fmnist"}


@dataclass
class TrainConfig:
    """Resolved options of one training run (saved with its outputs)."""

    preset: str = "fmnist-small"
    arch: str = "snn"
    neuron: str = "snntorch"
    timesteps: int = 4
    block: str = "prespike"  # the spiking residual block (sddpm.presets.BLOCKS)
    steps: int = 1000
    batch_size: int = 0  # 0: the preset's
    lr: float = 0.0  # 0: the preset's
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA
    seed: int = 0
    ckpt_every: int = 500
    sample_every: int = 1000
    sample_n: int = 36
    sample_steps: int = 50
    data_dir: str = ""
    out: str = "runs/train"
    device: str = "auto"

    def validate(self) -> TrainConfig:
        get_preset(self.preset)
        check_arch(self.arch)
        check_backend(self.neuron)
        if self.block not in BLOCKS:
            raise SddpmError(f"--block {self.block!r}: expected {' or '.join(BLOCKS)}")
        if self.block != "prespike" and self.arch != "snn":
            raise SddpmError(f"--block {self.block} is a spiking block; the ANN twin has "
                             "one block (drop --block or use --arch snn)")
        for name in ("timesteps", "steps", "ckpt_every", "sample_every"):
            if getattr(self, name) <= 0:
                raise SddpmError(f"--{name.replace('_', '-')} must be positive, "
                                 f"got {getattr(self, name)}")
        if self.batch_size < 0 or self.lr < 0 or not 0 <= self.ema_decay < 1:
            raise SddpmError("batch size and lr must be >= 0 and EMA decay in [0, 1)")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 62)


class BatchOrder:
    """Epoch-wise random permutations, addressed by absolute image position."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._epoch, self._perm = -1, None

    def indices(self, start: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=np.int64)
        for i, pos in enumerate(range(start, start + count)):
            epoch = pos // self.size
            if epoch != self._epoch:
                g = torch.Generator().manual_seed(self.seed * 31 + epoch)
                self._perm, self._epoch = torch.randperm(self.size, generator=g).numpy(), epoch
            out[i] = self._perm[pos % self.size]
        return out


# options that shape the trajectory: a resumed run takes them from its checkpoint
TRAJECTORY_OPTIONS = ("preset", "arch", "neuron", "timesteps", "block", "seed", "batch_size",
                      "lr", "warmup", "grad_clip", "ema_decay")


def merge_resumed_config(saved: TrainConfig, given: TrainConfig, path: Path) -> TrainConfig:
    """``given`` with the trajectory options of ``saved``; a conflicting explicit value fails."""
    defaults = TrainConfig()
    merged = given
    for key in TRAJECTORY_OPTIONS:
        old, new = getattr(saved, key), getattr(given, key)
        if new != old and new != getattr(defaults, key):
            raise SddpmError(f"cannot resume {path} with {key}={new!r}: the run was trained "
                             f"with {key}={old!r}; drop the option or start a new --out")
        merged = replace(merged, **{key: old})
    return merged


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    # placeholders: the statistics of an EMA written out are measured for it (_inference_ema)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _read_losses(path: Path, upto: int) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    # a kill during a write can leave a partial last row: keep complete rows only
    return [r for r in rows if len(r) == 4 and r[0].isdigit() and int(r[0]) <= upto]


class Trainer:
    """One training run; ``run()`` trains until ``config.steps`` and returns the last loss."""

    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
        self.rank, self.world, self.device = init_distributed(config.device)
        self.out = Path(config.out)
        checkpoint = self._resume_checkpoint() if resume else None
        if checkpoint is not None:
            saved = TrainConfig.from_dict(checkpoint.get("train_config", {}))
            config = merge_resumed_config(saved, config, self.out / "last.pt")
        elif (self.out / "last.pt").exists():
            raise SddpmError(f"{self.out / 'last.pt'} exists; pass --resume to continue that "
                             "run or choose another --out")
        self.cfg = config
        preset = get_preset(config.preset)
        self.model_config = preset.with_timesteps(config.timesteps).with_block(config.block)
        self.batch_size = config.batch_size or preset.batch_size
        self.lr = config.lr or preset.lr
        if self.batch_size % self.world:
            raise SddpmError(f"batch size {self.batch_size} is not divisible by {self.world} "
                             "processes; choose a multiple")
        self.data = load_dataset(preset.dataset, image_size=preset.image_size,
                                 data_dir=config.data_dir or None)
        self.order = BatchOrder(len(self.data), config.seed)
        torch.manual_seed(config.seed)
        self.model = build_model(self.model_config, config.arch, config.neuron).to(self.device)
        self.diffusion = GaussianDiffusion(self.model_config.diffusion_steps).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.step = 0
        if checkpoint is not None:
            self._load_state(checkpoint)
            if self.step > config.steps:
                raise SddpmError(f"{self.out / 'last.pt'} is at step {self.step}, past --steps "
                                 f"{config.steps}; give --steps above {self.step} to go on")
        # copied after loading, so that an EMA missing from the file starts at the weights
        self.ema = copy.deepcopy(self.model).eval() if config.ema_decay > 0 else None
        if self.ema is not None and checkpoint is not None and checkpoint.get("ema"):
            self.ema.load_state_dict(checkpoint["ema"])
        self.net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _resume_checkpoint(self) -> dict:
        path = self.out / "last.pt"
        if not path.exists():
            raise SddpmError(f"--resume: no checkpoint {path} to continue from; check --out "
                             "or start without --resume")
        ck = load_checkpoint(path, verify=False)  # the checksum after the shapes
        ModelConfig.from_dict(ck["model_config"])  # every value in range, or one line
        missing = [k for k in ("optimizer", "rng", "train_config") if ck.get(k) is None]
        if missing:
            raise SddpmError(f"cannot resume {path}: it has no {', '.join(missing)} (an "
                             "inference-only checkpoint); start a new run instead")
        return ck

    def _load_state(self, ck: dict) -> None:
        check_against_model(ck, self.model.state_dict(), self.out / "last.pt")
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            restore_rng_state(ck["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise SddpmError(f"cannot resume {self.out / 'last.pt'}: its state does not fit "
                             f"this model ({str(e).splitlines()[0][:160]})") from None
        self.step = int(ck["step"])
        saved_world = ck.get("world_size", 1)
        if saved_world != self.world:
            warnings.warn(f"resuming a run of {saved_world} process(es) with {self.world}: "
                          "batches split differently, so the losses will not repeat exactly",
                          stacklevel=2)

    def _inference_ema(self) -> tuple[torch.nn.Module | None, dict | None]:
        """A copy of the EMA with BatchNorm statistics of its own, and how they were measured.

        The running EMA stays as it is (its buffers are the raw model's), so a run resumed
        from a checkpoint repeats an unbroken run's losses exactly.
        """
        if self.ema is None:
            return None, None
        ema = copy.deepcopy(self.ema)
        record = recalibrate_batch_norm(ema, self.diffusion, self.data,
                                        Recalibration(seed=step_seed(self.cfg.seed, self.step, 0)))
        return ema.eval(), record.to_dict() if record is not None else None

    def _payload(self, ema: torch.nn.Module | None, recalibration: dict | None) -> dict:
        return {
            "arch": self.cfg.arch, "neuron": self.cfg.neuron,
            "model_config": self.model_config.to_dict(), "train_config": asdict(self.cfg),
            "step": self.step, "model": self.model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            RECALIBRATION_KEY: recalibration,
            "optimizer": self.optimizer.state_dict(), "rng": rng_state(),
            "world_size": self.world,
        }

    def _batch(self, generator: torch.Generator) -> torch.Tensor:
        per_rank = self.batch_size // self.world
        start = self.step * self.batch_size + self.rank * per_rank
        x = self.data.batch(self.order.indices(start, per_rank))
        if self.model_config.dataset in FLIP_DATASETS:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
        return x.to(self.device)

    def _train_step(self) -> tuple[float, float]:
        seed = step_seed(self.cfg.seed, self.step, self.rank)
        torch.manual_seed(seed)  # dropout of the ANN twin
        generator = torch.Generator().manual_seed(seed)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * min(1.0, (self.step + 1) / max(1, self.cfg.warmup))
        self.model.train()
        loss = self.diffusion.loss(self.net, self._batch(generator), generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        loss_value = loss.detach()
        if self.world > 1:
            dist.all_reduce(loss_value)
            loss_value /= self.world
        if not (math.isfinite(loss_value.item()) and math.isfinite(grad_norm.item())):
            return float("nan"), float("nan")
        self.optimizer.step()
        if self.ema is not None:
            # warm-up: early on the average would otherwise stay near the random init
            decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
            _ema_update(self.ema, self.model, decay)
        return loss_value.item(), grad_norm.item()

    def _write_samples(self, ema: torch.nn.Module | None) -> None:
        net = ema if ema is not None else self.model
        images = sample_images(net, self.diffusion, self.model_config, n=self.cfg.sample_n,
                               sampler="ddim", steps=self.cfg.sample_steps, seed=0,
                               device=self.device, progress=False)
        save_grid(images, self.out / "samples" / f"step{self.step:07d}.png")

    def _save(self, ema: torch.nn.Module | None, recalibration: dict | None) -> None:
        save_checkpoint(self._payload(ema, recalibration), self.out / "last.pt")

    def run(self) -> float:
        main = self.rank == 0
        losses_path = self.out / "losses.csv"
        kept = []
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "config.json", asdict(self.cfg))
            kept = _read_losses(losses_path, self.step)
            # a kill now must not lose the history: the trimmed log replaces it atomically
            with atomic_path(losses_path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerows([["step", "loss", "grad_norm", "seconds"], *kept])
        log = open(losses_path, "a", newline="") if main else None
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not main,
                   desc=f"train {self.cfg.arch} {self.cfg.preset}", dynamic_ncols=True)
        loss = float(kept[-1][1]) if kept else float("nan")
        try:
            while self.step < self.cfg.steps:
                t0 = time.perf_counter()
                loss, grad_norm = self._train_step()
                if not math.isfinite(loss):
                    raise SddpmError(
                        f"loss became non-finite at step {self.step + 1}; stopped, the last "
                        f"good checkpoint is {self.out / 'last.pt'}; lower --lr and --resume")
                self.step += 1
                seconds = time.perf_counter() - t0
                if main:
                    csv.writer(log).writerow([self.step, f"{loss:.6f}", f"{grad_norm:.4f}",
                                              f"{seconds:.4f}"])
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{self.batch_size / seconds:.1f}")
                    bar.update(1)
                done = self.step == self.cfg.steps
                save = main and (self.step % self.cfg.ckpt_every == 0 or done)
                grid = main and (self.step % self.cfg.sample_every == 0 or done)
                if save or grid:
                    ema, recalibration = self._inference_ema()
                if save:
                    log.flush()
                    self._save(ema, recalibration)
                if grid:
                    self._write_samples(ema)
        finally:
            bar.close()
            if log:
                log.close()
        if self.world > 1:
            dist.barrier()
        return loss
