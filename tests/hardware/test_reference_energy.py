"""The energy profiler on a converted official checkpoint counts the official spikes."""

import json

import pytest
import torch

from sddpm.hardware.energy import energy_report
from sddpm.hardware.hardware_costs import load_hardware_costs
from sddpm.hardware.profiler import ActivityProfiler
from sddpm.reference_checkpoint import reference_name
from sddpm.sampling import model_from_checkpoint
from tests.reference_fixture import DATA, converted_checkpoint, fixture_input


@pytest.mark.parametrize("tie", [False, True])
def test_profiled_spikes_are_the_official_counts(tmp_path, tie):
    model, _ = model_from_checkpoint(converted_checkpoint(tmp_path / "c.pt", tie=tie))
    model = model.double()
    x, t = fixture_input()
    with ActivityProfiler(model, 4) as profiler, torch.no_grad():
        model(x, t)
    profile = profiler.profile()
    counts = {reference_name(p.name): round(float(profile.population_rate[0, i].sum())
                                            * p.neurons * x.shape[0])
              for i, p in enumerate(profile.populations)}
    name = "spike_counts_tie.json" if tie else "spike_counts.json"
    assert counts == json.loads((DATA / name).read_text())
    report = energy_report(profile, load_hardware_costs("45nm-fp32"), "paper")
    assert report.ac_mj > 0 and report.mac_mj > 0
