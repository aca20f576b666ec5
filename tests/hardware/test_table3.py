import json

import numpy as np
import pytest

from hardware.energy import energy_report
from hardware.hardware_profiles import load_profile
from hardware.table3 import _with_rates, architecture_profile, implied_rate, mean_spike_rate
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def structure4():
    return architecture_profile("snn", 4)


def test_structure_of_the_paper_architecture(structure4):
    # 6.481 G MACs per spiking timestep (REFERENCE.md), the first conv computed once
    first = next(l for l in structure4.layers if l.kind == "conv2d")
    per_timestep = (structure4.dense_macs().sum() + 3 * first.dense_macs) / 4
    assert per_timestep == pytest.approx(6.481e9, rel=5e-4)
    assert first.dense_macs == 32 * 32 * 128 * 3 * 9
    assert sum(l.binary_input for l in structure4.layers) > 40


def test_implied_rate_prices_back_to_the_given_energy(structure4):
    hw = load_profile("45nm-fp32")
    rate = implied_rate(structure4, 10.97, hw)
    priced = structure4.input_rate.copy()
    priced[:] = rate
    profile = _with_rates(structure4, structure4)[0]
    profile.input_rate = priced
    assert energy_report(profile, hw, "paper").per_forward_mj == pytest.approx(10.97, rel=1e-9)


def test_measured_rates_are_used_per_layer_on_the_same_architecture(structure4):
    measured = _with_rates(structure4, structure4)[0]
    measured.input_rate = np.full_like(structure4.input_rate, 0.25)
    priced, how = _with_rates(structure4, measured)
    assert how == "per layer and timestep"
    assert mean_spike_rate(priced) == pytest.approx(0.25)


def test_reproduce_table3_json(tmp_path):
    result = run_cli("sddpm", "energy", "--reproduce-table3", "--json", "--steps", "3",
                     "--n", "2")
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    rows = {r["model"]: r for r in table["rows"]}
    ann = rows["DDPM-ANN"]
    assert abs(ann["ours_mJ"] / 29.23 - 1) < 0.005
    assert ann["dense_macs_per_forward"] == pytest.approx(6.3495e9, rel=1e-4)
    for name, T in (("SDDPM-4T", 4), ("SDDPM-8T", 8)):
        row = rows[name]
        assert row["timesteps"] == T and row["paper_mJ"] in (10.97, 22.96)
        assert 0.4 < row["paper_implied_rate"] < 0.55
        assert 0 < row["our_spike_rate"] < 1 and row["ours_mJ"] > 0
    src = table["rate_source"]
    assert src["arch"] == "snn" and src["checkpoint"].endswith("fmnist-small-snn.pt")
    assert table["convention"] == "paper" and table["hardware"] == "45nm-fp32"
