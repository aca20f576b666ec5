"""``sddpm energy --compare`` on the shipped pair: five conventions, NeuroBench beside ours."""

import json

import pytest

from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.hardware.compare import ann_twin, compare_checkpoint
from sddpm.hardware.conventions import CONVENTIONS


@pytest.fixture(scope="module")
def result():
    return compare_checkpoint(SHIPPED_CHECKPOINT, n=1, steps=2, progress=False)


def test_every_convention_for_both_networks_with_ratios(result):
    assert set(result["snn"]) == set(result["ann"]) == set(CONVENTIONS) == {
        "paper", "strict", "neurobench", "memory", "deployed"}
    assert result["ann_checkpoint"] == str(ann_twin(SHIPPED_CHECKPOINT))
    for name in CONVENTIONS:
        snn, ann = result["snn"][name], result["ann"][name]
        assert result["snn_over_ann"][name] == pytest.approx(
            snn["energy_per_image_mJ"] / ann["energy_per_image_mJ"])
        # per image is the two denoising steps of the run
        assert snn["energy_per_image_mJ"] == pytest.approx(2 * snn["energy_per_forward_mJ"],
                                                           rel=0.2)
    # 'strict' re-prices the paper's analog-input ACs as MACs: never cheaper
    assert result["snn"]["strict"]["energy_per_forward_mJ"] > \
        result["snn"]["paper"]["energy_per_forward_mJ"]
    # the ANN is dense MACs under paper, strict and (all host) deployed alike
    assert result["ann"]["paper"]["energy_per_forward_mJ"] == pytest.approx(
        result["ann"]["deployed"]["energy_per_forward_mJ"], rel=1e-12)


def test_neurobench_counts_our_exact_events_layer_by_layer(result):
    rows = result["neurobench_vs_ours"]
    assert len(rows) == len(result["snn_layers"])
    T = result["timesteps"]
    for row in rows:
        assert row["neurobench_op"] == row["strict_op"], row
        # NeuroBench runs the first conv on the T copies of the image; we compute it once
        times = T if row["layer"] == "encoder.conv1" else 1
        assert row["neurobench_ops"] == pytest.approx(times * row["our_exact_events"],
                                                      rel=1e-6), row
    first = next(r for r in rows if r["layer"] == "encoder.conv1")
    assert any("times" in why for why in first["differences"])


def test_the_chip_network_is_the_export(result):
    deployed = result["snn"]["deployed"]
    maps = [r for r in deployed["rows_per_forward_mJ"] if r.startswith("chip ") and "+" in r]
    assert len(maps) == result["chip_maps"] > len(result["snn_layers"]) // 2
    assert deployed["components_per_forward_mJ"]["chip neuron updates"] > 0


def test_cli_json_and_refusals(tmp_path, capsys):
    from tests.cli.test_main import _one_line_error
    from tests.conftest import run_cli

    done = run_cli("sddpm", "energy", SHIPPED_CHECKPOINT, "--compare", "--json", "--n", "1",
                   "--steps", "1", "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data["snn_over_ann"]) == set(CONVENTIONS)
    assert (tmp_path / "cmp" / "energy_by_convention.png").stat().st_size > 0
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["images"] == 1
    capsys.readouterr()
    assert "add --compare" in _one_line_error(
        capsys, ["energy", str(SHIPPED_CHECKPOINT), "--ann", "x.pt"])
    assert "drop --profile" in _one_line_error(
        capsys, ["energy", str(SHIPPED_CHECKPOINT), "--compare", "--convention", "strict"])


def test_without_a_twin_no_ratio_and_a_wrong_twin_refused(tiny_checkpoint, capsys):
    from sddpm.hardware.compare import format_compare
    from tests.cli.test_main import _one_line_error

    alone = compare_checkpoint(tiny_checkpoint, n=1, steps=1, progress=False)
    assert alone["ann_checkpoint"] is None and "ann" not in alone
    assert set(alone["snn"]) == set(CONVENTIONS)
    assert "give one with --ann" in format_compare(alone)
    err = _one_line_error(capsys, ["energy", tiny_checkpoint, "--compare", "--ann",
                                   tiny_checkpoint, "--n", "1", "--steps", "1"])
    assert "holds an SNN" in err and "needs an ANN twin" in err
