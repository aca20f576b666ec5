"""`--denoise-steps K --steps S`: the last K steps of a real DDIM-S schedule run in Lava,
the first S - K in PyTorch, and the model of those is gone before Lava forks."""

import gc
import json
import weakref

import pytest
import torch

from sddpm.diffusion import ddim_timesteps
from sddpm.simulations.denoise import HandOver
from tests.conftest import run_cli


class _Model:
    def __init__(self, tag):
        self.tag, self.calls = tag, []

    def __call__(self, x, t):
        self.calls.append(int(t[0]))
        return torch.full_like(x, self.tag)


def test_the_first_calls_go_before_and_the_rest_after_built_once_the_first_is_dropped():
    before, built = _Model(1.0), []

    def build():
        gc.collect()
        built.append(alive())  # what the Lava side would fork from
        return _Model(2.0)

    alive = weakref.ref(before)
    model = HandOver(3, before, build)
    del before
    x = torch.zeros(1, 1, 2, 2)
    out = [float(model(x, torch.tensor([t]))[0, 0, 0, 0]) for t in (900, 600, 300, 200, 0)]
    assert out == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert built == [None]  # the first model was freed before the second was built
    assert model.after.calls == [200, 0]


def _simulate(bundle, out, *args):
    done = run_cli("sddpm", "simulate", bundle, "--out", out, "--json", *args, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow  # a compiled Lava network
def test_the_last_k_steps_of_a_real_schedule_run_in_lava(lava_bundle, tmp_path):
    report = _simulate(lava_bundle, tmp_path / "sim", "--denoise-steps", "2", "--steps", "5")
    assert report["schedule_steps"] == 5 and report["steps_before_lava"] == 3
    assert [s["t"] for s in report["steps"]] == ddim_timesteps(1000, 5)[-2:]
    assert report["spike_mismatches"] == 0 < report["reference_spikes"]
    # the same trajectory as PyTorch's all the way, float64 arithmetic in another order
    assert report["image_max_abs_difference"] < 1e-5


@pytest.mark.slow  # a compiled Lava network, every step of the schedule in fixed_pt
def test_a_whole_image_in_lava_fixed_pt_is_the_emulations_bit_for_bit(lava_bundle, tmp_path):
    report = _simulate(lava_bundle, tmp_path / "all", "--fixed-point", "--denoise-steps", "all",
                       "--steps", "4", "--n", "2")
    assert report["steps_before_lava"] == 0 and report["denoise_steps"] == 4
    assert report["stream_mismatches"] == 0 and report["spike_mismatches"] == 0
    assert all(s["stream_mismatches"] == 0 for s in report["steps"])
    assert report["image_max_abs_difference"] == 0.0


def test_more_lava_steps_than_the_schedule_has_is_one_clear_error(lava_bundle, tmp_path):
    done = run_cli("sddpm", "simulate", lava_bundle, "--denoise-steps", "6", "--steps", "5",
                   "--out", tmp_path)
    assert done.returncode == 2
    assert "more than the schedule's 5 network calls" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a compiled Lava network
def test_without_spike_taps_lava_is_checked_on_its_integer_stream(lava_bundle, tmp_path):
    report = _simulate(lava_bundle, tmp_path / "lean", "--fixed-point", "--spike-taps", "none",
                       "--denoise-steps", "1", "--steps", "3")
    assert report["tapped_populations"] == [] and report["spike_mismatches"] is None
    assert report["stream_mismatches"] == 0 and report["image_max_abs_difference"] == 0.0
    # one Extractor per population fewer
    assert report["lava_processes"] == report["estimate"]["processes"]
    assert not (tmp_path / "lean" / "comparison.png").exists()


@pytest.mark.slow  # two compiled Lava networks
def test_two_runs_tapping_half_the_populations_each_compare_every_spike(lava_bundle, tmp_path):
    halves = [_simulate(lava_bundle, tmp_path / f"part{k}", "--spike-taps", f"{k}/2",
                        "--denoise-steps", "1", "--steps", "3") for k in (1, 2)]
    first, second = (set(r["tapped_populations"]) for r in halves)
    assert first and second and not first & second
    compared = [set(r["steps"][0]["firing_rate"]) for r in halves]
    assert compared == [first, second] and len(first | second) == 23  # tiny's populations
    assert all(r["spike_mismatches"] == 0 < r["reference_spikes"] for r in halves)
    assert halves[0]["lava_processes"] == halves[0]["estimate"]["processes"]
    assert halves[0]["images"] == halves[1]["images"]


def test_a_tap_part_that_is_none_is_one_clear_error(lava_bundle, tmp_path):
    done = run_cli("sddpm", "simulate", lava_bundle, "--spike-taps", "3/2", "--out", tmp_path)
    assert done.returncode == 2 and "expected all, none or K/M" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a compiled Lava network
def test_a_second_order_diffusers_sampler_hands_its_last_calls_to_lava(lava_bundle, tmp_path):
    # Heun over 2 steps calls the network 3 times (second order, no correction at the
    # end): the last 2 calls run in Lava, the first in the reference
    report = _simulate(lava_bundle, tmp_path / "heun", "--sampler", "heun", "--steps", "2",
                       "--denoise-steps", "2")
    assert (report["sampler"], report["network_calls"]) == ("heun", 3)
    assert report["steps_before_lava"] == 1 and report["denoise_steps"] == 2
    assert report["spike_mismatches"] == 0 and report["image_max_abs_difference"] == 0.0
