import json

import h5py
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def energy_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("energy")
    result = run_cli("sddpm", "energy", tiny_checkpoint, "--steps", "3", "--n", "2",
                     "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_energy_json_and_files(energy_run):
    out, report = energy_run
    assert report["denoising_steps"] == 3 and len(report["per_step"]) == 3
    assert report["energy_per_image_mJ"] == pytest.approx(
        sum(s["energy_mJ"] for s in report["per_step"]))
    assert report["energy_per_forward_mJ"] == pytest.approx(report["energy_per_image_mJ"] / 3)
    for name in ("profile.h5", "profile.csv", "energy.json", "energy_layers.csv",
                 "energy_by_layer.png", "rates_by_layer.png", "rates_heatmap.png"):
        assert (out / name).stat().st_size > 0, name
    with h5py.File(out / "profile.h5") as f:
        assert f["input_rate"].shape[0] == 3
    rows = (out / "energy_layers.csv").read_text().splitlines()
    assert len(rows) == 1 + len(report["layers"])


def test_saved_profile_prices_the_same(energy_run):
    out, report = energy_run
    again = run_cli("sddpm", "energy", "--profile", out / "profile.h5", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["energy_per_image_mJ"] == report["energy_per_image_mJ"]
    strict = run_cli("sddpm", "energy", "--profile", out / "profile.h5", "--json",
                     "--convention", "strict", "--hardware", "loihi1")
    strict = json.loads(strict.stdout)
    assert strict["convention"] == "strict" and strict["breakdown_per_forward_mJ"]["neuron"] > 0


def test_text_report_names_every_layer(energy_run, tiny_checkpoint):
    out, report = energy_run
    text = run_cli("sddpm", "energy", "--profile", out / "profile.h5")
    assert text.returncode == 0
    for layer in report["layers"]:
        assert layer["name"] in text.stdout
    assert "per generated image (3 steps)" in text.stdout


@pytest.mark.parametrize("args, message", [
    (("--hardware", "gpu"), "unknown hardware 'gpu'"),
    (("--convention", "loose"), "unknown convention 'loose'"),
    (("--sampler", "karras-euler"), "unknown sampler 'karras-euler'"),
])
def test_bad_options_are_one_line(tiny_checkpoint, args, message):
    result = run_cli("sddpm", "energy", tiny_checkpoint, "--steps", "2", "--n", "1", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("garbage")
    for args, message in [((str(tmp_path / "none.pt"),), "none.pt"),
                          (("--profile", str(bad)), "not a spike profile"),
                          ((), "give a checkpoint")]:
        result = run_cli("sddpm", "energy", *args)
        assert result.returncode == 2, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_ann_checkpoint(tmp_path_factory):
    from sddpm.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("tiny-ann")
    Trainer(TrainConfig(preset="tiny", arch="ann", steps=2, ckpt_every=2, sample_every=1000,
                        out=str(out), warmup=1)).run()
    return out / "last.pt"


def test_table3_refuses_before_any_sampling(tiny_ann_checkpoint, tmp_path):
    for args, message in [((tiny_ann_checkpoint,), "holds an ANN"),
                          (("--hardware", "loihi1"), "prices on 45nm-fp32"),
                          (("--out", tmp_path), "drop --hardware, --convention and --out")]:
        result = run_cli("sddpm", "energy", "--reproduce-table3", *args)
        assert result.returncode == 2, args
        assert message in result.stderr and "sampling" not in result.stderr


def test_out_that_is_a_file_is_refused_before_sampling(tiny_checkpoint, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    result = run_cli("sddpm", "energy", tiny_checkpoint, "--out", target)
    assert result.returncode == 2 and "is a file" in result.stderr
    assert "sampling" not in result.stderr and target.read_text() == "keep me"
