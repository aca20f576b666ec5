"""A measured activity profile: what every synaptic layer received, step by step.

The record the energy model reads. It holds plain values and numpy arrays only (no
torch, no Lava), so a profile measured in PyTorch and one read back from a Lava run
are the same kind of object. Saved as HDF5 (h5py) and as CSV.

Shapes: ``S`` diffusion steps profiled, ``L`` synaptic layers, ``P`` IF populations,
``T`` spiking timesteps (1 for an ANN).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sddpm.errors import SddpmError
from sddpm.files import atomic_path, readable_file

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynapticLayer:
    """One linear map (conv or linear layer) and how often it runs per forward pass.

    ``dense_macs`` counts one application for one image, padding taps included (the
    usual MAC convention). ``per_timestep``: it runs once per spiking timestep (T
    applications); otherwise once per forward (the time-embedding MLP, the first conv
    whose input, the image, repeats over T, and the decoder's Conv3d, whose MACs
    already span T). ``binary_input``: every input it saw was 0 or 1 (spikes). ``bias``:
    it adds one. ``stride``: of a convolution, per spatial axis.
    """

    name: str
    kind: str
    weight_shape: tuple
    input_shape: tuple
    output_shape: tuple
    dense_macs: int
    per_timestep: bool
    binary_input: bool
    bias: bool = True  # profiles written before it was recorded: every layer had one
    stride: tuple = ()  # per spatial axis; () for a Linear and in older profiles

    @classmethod
    def from_dict(cls, d: dict) -> SynapticLayer:
        return cls(**{**d, **{k: tuple(d[k]) for k in
                              ("weight_shape", "input_shape", "output_shape", "stride")
                              if k in d}})


@dataclass(frozen=True)
class Population:
    """An IF population; ``neurons`` per image."""

    name: str
    neurons: int


@dataclass
class SpikeProfile:
    """Activity measured over a sampling run.

    Attributes
    ----------
    diffusion_t : ndarray ``[S]``
        The diffusion step t of each profiled forward pass, in sampling order.
    input_rate : ndarray ``[S, L, T]``
        Fraction of non-zero inputs of each layer per spiking timestep (the firing rate
        for spike inputs); layers that run once per forward repeat one value over T.
    exact_events : ndarray ``[S, L]``
        Synaptic events per image per forward pass: each non-zero input times the
        number of weights it really meets (padding excluded).
    population_rate : ndarray ``[S, P, T]``
        Fraction of neurons firing, per population and spiking timestep.
    meta : dict
        Where it came from: checkpoint, preset, arch, sampler, images, seed, backend.
    """

    layers: list[SynapticLayer]
    populations: list[Population]
    timesteps: int
    diffusion_t: np.ndarray
    input_rate: np.ndarray
    exact_events: np.ndarray
    population_rate: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        S, L, P, T = len(self.diffusion_t), len(self.layers), len(self.populations), self.timesteps
        expected = {"input_rate": (S, L, T), "exact_events": (S, L),
                    "population_rate": (S, P, T)}
        for name, shape in expected.items():
            found = np.shape(getattr(self, name))
            if found != shape:
                raise SddpmError(f"spike profile: {name} should have shape {shape}, found "
                                 f"{found}; the file is damaged or from another tool")
        # rates are fractions, events counts: a NaN here would print NaN millijoules
        for name, upper in (("input_rate", 1.0), ("population_rate", 1.0),
                            ("exact_events", np.inf)):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            bad = ~np.isfinite(values) | (values < 0) | (values > upper)
            if bad.any():
                want = "a fraction in [0, 1]" if upper == 1 else "a finite count >= 0"
                raise SddpmError(f"spike profile: {name} holds {values[bad].flat[0]!r}, "
                                 f"expected {want}; the file is damaged or from another tool")

    @property
    def arch(self) -> str:
        """``snn`` or ``ann``; without a record, a profile with IF populations is an SNN."""
        return self.meta.get("arch", "snn" if self.populations else "ann")

    def applications(self) -> np.ndarray:
        """``[L]``: how many times each layer runs per forward pass."""
        return np.array([self.timesteps if l.per_timestep else 1 for l in self.layers])

    def dense_macs(self) -> np.ndarray:
        """``[L]`` dense MACs per image per forward pass (all applications)."""
        return np.array([l.dense_macs for l in self.layers], dtype=np.float64) * self.applications()

    def synaptic_ops(self) -> np.ndarray:
        """``[S, L]`` estimated synaptic operations ``fr * T * MACs`` per image and forward."""
        macs = np.array([l.dense_macs for l in self.layers], dtype=np.float64)
        per_t = np.array([l.per_timestep for l in self.layers])
        summed = np.where(per_t, self.input_rate.sum(axis=2), self.input_rate[:, :, 0])
        return summed * macs

    def mean_rate(self) -> np.ndarray:
        """``[L]`` input rate of each layer averaged over steps and timesteps."""
        return self.input_rate.mean(axis=(0, 2))

    # -- files -----------------------------------------------------------------------

    def _header(self) -> dict:
        return {"format_version": FORMAT_VERSION, "timesteps": self.timesteps,
                "layers": [asdict(l) for l in self.layers],
                "populations": [asdict(p) for p in self.populations], "meta": self.meta}

    def save_h5(self, path) -> Path:
        """Write atomically: a half-written profile never replaces a good one."""
        import h5py

        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["header"] = json.dumps(self._header())
            f.create_dataset("diffusion_t", data=np.asarray(self.diffusion_t, dtype=np.int64))
            for name in ("input_rate", "exact_events", "population_rate"):
                f.create_dataset(name, data=np.asarray(getattr(self, name), dtype=np.float64))
            f.create_dataset("layer_names", data=[l.name.encode() for l in self.layers])
            f.create_dataset("population_names",
                             data=[p.name.encode() for p in self.populations])
        return Path(path)

    @classmethod
    def load_h5(cls, path) -> SpikeProfile:
        import h5py

        path = readable_file(path, "spike profile", "give a profile.h5 written by "
                             "'sddpm energy CKPT --out DIR'")
        try:
            with h5py.File(path, "r") as f:
                header = json.loads(f.attrs["header"])
                arrays = {k: f[k][()] for k in
                          ("diffusion_t", "input_rate", "exact_events", "population_rate")}
            version = header.get("format_version")
            if version != FORMAT_VERSION:
                raise SddpmError(f"spike profile {path} has format version {version}, this "
                                 f"sddpm reads {FORMAT_VERSION}; profile again")
            return cls(layers=[SynapticLayer.from_dict(d) for d in header["layers"]],
                       populations=[Population(**d) for d in header["populations"]],
                       timesteps=int(header["timesteps"]), meta=dict(header["meta"]),
                       **arrays)
        except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise SddpmError(f"{path} is not a spike profile written by sddpm "
                             f"({type(e).__name__}: {e}); profile again with "
                             "'sddpm energy CKPT --out DIR'") from None

    def save_csv(self, path) -> Path:
        """Long format: one row per (diffusion step, layer or population, timestep)."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["diffusion_t", "kind", "name", "spiking_timestep", "rate"])
            for s, t in enumerate(self.diffusion_t):
                for i, layer in enumerate(self.layers):
                    for k in range(self.timesteps if layer.per_timestep else 1):
                        w.writerow([int(t), "layer_input", layer.name, k,
                                    f"{self.input_rate[s, i, k]:.6g}"])
                for i, pop in enumerate(self.populations):
                    for k in range(self.timesteps):
                        w.writerow([int(t), "population", pop.name, k,
                                    f"{self.population_rate[s, i, k]:.6g}"])
        return Path(path)
