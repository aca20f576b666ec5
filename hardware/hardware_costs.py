"""Energy costs of hardware per operation, kept as data files in ``hardware/costs/``.

("Profile" in this project means a measured activity record, :mod:`.spike_profile`;
what a chip or a process charges per operation is its cost table, here.) Each file
gives the energy of one multiply-accumulate (``mac_pj``), one accumulate or synaptic
event (``ac_pj``) and, where published, one neuron update per timestep
(``neuron_update_pj`` with ``active``/``inactive``), all in picojoules, with the
``source`` it comes from. A file may add ``memory``, the SRAM figures the ``memory``
convention prices accesses with: ``pj_per_bit`` and ``pj_per_access`` (one access to a
memory of ``n`` words of ``word_bits`` bits costs ``pj_per_bit * n * word_bits +
pj_per_access``). Adding hardware is adding a file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from sddpm.errors import SddpmError
from sddpm.files import readable_file

# package data (pyproject.toml), beside this module in a checkout and in a wheel
COSTS_DIR = Path(__file__).with_name("costs")


@dataclass(frozen=True)
class HardwareCosts:
    """Energy per operation in pJ; ``neuron_update_pj`` is ``None`` when unpublished."""

    name: str
    description: str
    mac_pj: float
    ac_pj: float
    neuron_update_pj: dict | None
    source: str
    notes: str = ""
    memory: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HardwareCosts:
        fields = ("name", "description", "mac_pj", "ac_pj", "neuron_update_pj", "source")
        missing = [f for f in fields if f not in data]
        if missing:
            raise SddpmError(f"hardware cost file lacks {', '.join(missing)}")
        costs = cls(**{k: data[k] for k in (*fields, "notes", "memory") if k in data})
        costs.validate()
        return costs

    def validate(self) -> None:
        for key in ("mac_pj", "ac_pj"):
            _check_energy(self.name, key, getattr(self, key))
        # the 'strict' convention never undercuts 'paper' only because a MAC costs at
        # least an accumulate; a cost file breaking that is a typo, not hardware
        if self.mac_pj < self.ac_pj:
            raise SddpmError(f"hardware costs {self.name}: mac_pj {self.mac_pj} is below "
                             f"ac_pj {self.ac_pj}; a MAC includes an accumulate")
        if self.memory is not None:
            keys = {"pj_per_bit", "pj_per_access", "word_bits"}
            if not isinstance(self.memory, dict) or set(self.memory) != keys:
                raise SddpmError(f"hardware costs {self.name}: memory must be null or "
                                 f"{{{', '.join(sorted(keys))}}}, got {self.memory!r}")
            for key, value in self.memory.items():
                _check_energy(self.name, f"memory.{key}", value)
        update = self.neuron_update_pj
        if update is None:
            return
        if not isinstance(update, dict) or set(update) != {"active", "inactive"}:
            raise SddpmError(f"hardware costs {self.name}: neuron_update_pj must be null "
                             f"or {{\"active\": pJ, \"inactive\": pJ}}, got {update!r}")
        for key, value in update.items():
            _check_energy(self.name, f"neuron_update_pj.{key}", value)


def _check_energy(hardware: str, key: str, value) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise SddpmError(f"hardware costs {hardware}: {key} must be a positive, finite "
                         f"number of pJ, got {value!r}")


def available_hardware() -> list[str]:
    """Names of the shipped cost files (``45nm-fp32``, ``loihi1``, ...)."""
    return sorted(p.stem for p in COSTS_DIR.glob("*.json"))


def load_hardware_costs(name_or_path: str) -> HardwareCosts:
    """Shipped costs by name (``45nm-fp32``) or any cost file by path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = COSTS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise SddpmError(f"unknown hardware {name_or_path!r}; expected one of "
                             f"{', '.join(available_hardware())} or a hardware cost .json file")
    readable_file(path, "hardware cost file", "give a .json file like those in hardware/costs")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SddpmError(f"hardware cost file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SddpmError(f"hardware cost file {path} must hold a JSON object")
    return HardwareCosts.from_dict(data)
