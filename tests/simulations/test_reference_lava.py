"""An official SDDPM checkpoint, converted, deployed on Lava with the commands a user runs.

The model is the fixture's tie variant (tests/data/reference_sddpm/README.md): 8,192
membranes of one layer land exactly on the threshold at every step, where the official
``v >= threshold`` and Lava's strict ``v > vth`` part unless the export carried the rule.
"""

import json

import pytest
import torch

from sddpm.checkpoint import load_checkpoint
from tests.conftest import run_cli
from tests.reference_fixture import LAYOUTS, converted_checkpoint


@pytest.fixture(scope="module")
def tie_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference-lava")
    checkpoint = converted_checkpoint(out / "tie.pt", LAYOUTS[1], tie=True)
    assert load_checkpoint(checkpoint)["model_config"]["fires_on"] == ">="
    done = run_cli("sddpm-export", "--to", "lava", checkpoint, "-o", out / "bundle",
                   "--dtype", "float64", "--json")
    assert done.returncode == 0, done.stderr
    return checkpoint, out / "bundle", out


def _simulate(bundle, out, *extra):
    done = run_cli("sddpm", "simulate", bundle, "--denoise-steps", "1", "--n", "1",
                   "--out", out, "--json", *extra, timeout=1200)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow  # one denoising step of the fmnist-small-sized network in Lava (~2 min)
def test_one_ddim_step_in_lava_float_fires_as_the_torch_model(tie_bundle):
    checkpoint, bundle, out = tie_bundle
    report = _simulate(bundle, out / "float", "--checkpoint", checkpoint)
    assert report["precision"] == "floating_pt"
    assert report["reference"].startswith("torch model")
    assert report["spike_mismatches"] == 0 < report["reference_spikes"]
    assert report["worst_spike_agreement"] == 1.0
    assert report["max_eps_rel_error"] < 1e-9


@pytest.mark.slow  # one denoising step of the fmnist-small-sized network in Lava (~2 min)
def test_one_ddim_step_in_lava_fixed_pt_equals_the_emulation(tie_bundle):
    _, bundle, out = tie_bundle
    report = _simulate(bundle, out / "fixed", "--fixed-point")
    assert report["precision"] == "fixed_pt"
    assert report["spike_mismatches"] == 0 < report["reference_spikes"]
    assert report["max_eps_rel_error"] < 1e-12  # the same integers, float decoding
    first_layer = report["steps"][0]["firing_rate"]["down.0.neuron1"]
    assert first_layer > 0
    assert torch.isfinite(torch.tensor(report["against_float"]["eps_rel_error"])).all()
