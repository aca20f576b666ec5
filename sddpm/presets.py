"""Model presets: one record per data set and size, shared by the SNN and its ANN twin."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from sddpm.errors import SddpmError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and data shape of a U-Net noise predictor.

    ``ch_mult`` gives the channel multiplier of each resolution level; every level but
    the last halves the resolution. ``timesteps`` is the number of spiking timesteps T
    (SNN only); ``dropout`` and ``attn_middle`` apply to the ANN twin only.
    ``fires_on`` is the IF neurons' rule: ``">"`` for models sddpm trains, ``">="`` for
    models of the official SDDPM code (spikingjelly's IFNode); every stage keeps it.
    ``block`` is the spiking residual block: ``"prespike"`` (the paper's) or
    ``"standard"`` (the conventional block of its ablation, Table 4).
    """

    name: str
    dataset: str
    image_size: int
    image_channels: int
    ch: int
    ch_mult: tuple = (1, 2, 2, 4)
    num_res_blocks: int = 2
    timesteps: int = 4
    diffusion_steps: int = 1000
    dropout: float = 0.1
    attn_middle: bool = True
    batch_size: int = 128
    lr: float = 2e-4
    fires_on: str = ">"
    block: str = "prespike"

    def __post_init__(self):
        self._check_values()
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        levels = len(self.ch_mult)
        if self.image_size % 2 ** (levels - 1):
            raise SddpmError(
                f"image size {self.image_size} is not divisible by 2^{levels - 1} "
                f"for {levels} resolution levels; pad the images or drop a level"
            )

    def _check_values(self) -> None:
        """Every value in range, before anything is built from it (a damaged or edited
        checkpoint must fail here, in one line, not deep inside a layer)."""
        def bad(name, expected):
            raise SddpmError(f"model config: {name} must be {expected}, found "
                             f"{getattr(self, name)!r}; the checkpoint is damaged or edited")

        def positive_int(value):
            return isinstance(value, int) and not isinstance(value, bool) and value > 0

        for name in ("name", "dataset"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                bad(name, "a non-empty name")
        for name in ("image_size", "image_channels", "ch", "num_res_blocks", "timesteps",
                     "diffusion_steps", "batch_size"):
            if not positive_int(getattr(self, name)):
                bad(name, "a positive integer")
        if self.ch % 2:
            bad("ch", "even (the sinusoidal time embedding pairs sin and cos)")
        if (not isinstance(self.ch_mult, (list, tuple)) or not self.ch_mult
                or not all(positive_int(m) for m in self.ch_mult)):
            bad("ch_mult", "a non-empty list of positive integers")
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0 <= self.dropout < 1):
            bad("dropout", "a number in [0, 1)")
        if not isinstance(self.attn_middle, bool):
            bad("attn_middle", "true or false")
        if (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                or not math.isfinite(self.lr) or self.lr <= 0):
            bad("lr", "a positive number")
        if self.fires_on not in (">", ">="):
            bad("fires_on", "'>' or '>='")
        if self.block not in BLOCKS:
            bad("block", " or ".join(repr(b) for b in BLOCKS))

    @property
    def levels(self) -> int:
        return len(self.ch_mult)

    def with_timesteps(self, timesteps: int) -> ModelConfig:
        if not isinstance(timesteps, int) or timesteps <= 0:
            raise SddpmError(f"spiking timesteps T must be a positive integer, got {timesteps}")
        return replace(self, timesteps=timesteps)

    def with_block(self, block: str) -> ModelConfig:
        if block not in BLOCKS:
            raise SddpmError(f"unknown residual block {block!r}; expected "
                             f"{' or '.join(BLOCKS)}")
        return replace(self, block=block)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise SddpmError(f"model config must be a dict, found {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SddpmError(f"model config has unknown keys {sorted(unknown)}")
        try:
            config = cls(**d)
        except TypeError as e:
            raise SddpmError(f"model config is malformed ({e})") from None
        preset = PRESETS.get(config.name)
        if preset is not None:
            differ = [f for f in ARCHITECTURE_FIELDS if getattr(config, f) != getattr(preset, f)]
            if differ:
                f = differ[0]
                raise SddpmError(f"model config names preset {config.name} but its {f} is "
                                 f"{getattr(config, f)!r}, the preset's {getattr(preset, f)!r}; "
                                 "the checkpoint is damaged or edited")
        return config


# spiking residual blocks: the paper's pre-spike block and the ablation's standard one
BLOCKS = ("prespike", "standard")

# what a preset fixes; T, the firing rule, the block and the training options may differ
ARCHITECTURE_FIELDS = ("dataset", "image_size", "image_channels", "ch", "ch_mult",
                       "num_res_blocks", "diffusion_steps", "attn_middle")

PRESETS: dict[str, ModelConfig] = {
    p.name: p
    for p in [
        ModelConfig("cifar10", "cifar10", 32, 3, ch=128),
        ModelConfig("mnist", "mnist", 32, 1, ch=128),
        ModelConfig("fmnist", "fmnist", 32, 1, ch=128),
        ModelConfig("celeba64", "celeba", 64, 3, ch=128, ch_mult=(1, 2, 2, 2, 4)),
        ModelConfig("lsun64", "lsun", 64, 3, ch=128, ch_mult=(1, 2, 2, 2, 4)),
        # Trainable on a 2-core CPU within an hour (~1 M parameters).
        ModelConfig(
            "fmnist-small", "fmnist", 32, 1, ch=32, ch_mult=(1, 2, 2),
            num_res_blocks=1, batch_size=32, lr=1e-3,
        ),
        # A single resolution level: no down- or upsampling.
        ModelConfig(
            "digits-flat", "digits", 8, 1, ch=8, ch_mult=(1,),
            num_res_blocks=1, batch_size=32, lr=1e-3, dropout=0.0,
        ),
        # For tests: seconds per step.
        ModelConfig(
            "tiny", "digits", 8, 1, ch=8, ch_mult=(1, 2), num_res_blocks=1,
            batch_size=16, lr=1e-3, dropout=0.0,
        ),
    ]
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise SddpmError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


ARCHS = ("snn", "ann")


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise SddpmError(f"unknown architecture {arch!r}; choose 'snn' or 'ann'")
    return arch


