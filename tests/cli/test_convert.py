"""``sddpm convert --from sddpm-reference``: bad files get one line and nothing is written;
a CIFAR-10-sized official checkpoint goes through ``info`` and ``energy``."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sddpm.cli.main import main
from sddpm.presets import get_preset
from sddpm.reference_checkpoint import expected_reference_tensors
from tests.cli.test_main import _one_line_error
from tests.conftest import run_cli
from tests.reference_fixture import DATA


def _official_state():
    return load_file(str(DATA / "state_dict.safetensors"))


def _saved(tmp_path, state, name="official.pt"):
    torch.save({"net_model": state, "optim": {}, "step": 7, "x_T": torch.zeros(1)},
               tmp_path / name)
    return tmp_path / name


def _without(key):
    def change(state):
        del state[key]
    return change


def _set(key, shape):
    def change(state):
        state[key] = torch.zeros(shape)
    return change


@pytest.mark.parametrize("change, needle", [
    (_without("downblocks.2.bn2.running_var"), "lacks downblocks.2.bn2.running_var"),
    (_without("upblocks.7.shortcut.bias"), "lacks upblocks.7.shortcut.bias"),
    (_set("downblocks.0.attn.proj.weight", (32, 32)), "downblocks.0.attn.proj.weight (attention"),
    (_set("middleblocks.0.neuron1.w", ()), "middleblocks.0.neuron1.w (a learnable neuron"),
    (_set("tail_conv.weight", (3, 32, 3, 3)), "tail_conv.weight has shape [3, 32, 3, 3]"),
    (_set("downblocks.0.conv1.weight", (32, 16, 3, 3)),
     "downblocks.0.conv1.weight has shape [32, 16, 3, 3], expected [32, 32, 3, 3]"),
    (_set("downblocks.0.conv1.weight", (48, 32, 3, 3)),
     "downblocks.0.conv1.weight: level 0 is [48] channels wide"),
    (_without("time_embedding.timembedding.0.weight"), "lacks time_embedding.timembedding.0"),
])
def test_state_dicts_that_do_not_fit_are_refused_by_key(capsys, tmp_path, change, needle):
    state = _official_state()
    change(state)
    out = tmp_path / "out.pt"
    err = _one_line_error(capsys, ["convert", "--from", "sddpm-reference",
                                   str(_saved(tmp_path, state)), "-o", str(out)])
    assert needle in err, err
    assert not out.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _truncated(tmp_path):
    data = (DATA / "ckpt_reference_layout.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    return tmp_path / "half.pt", "truncated"


def _empty(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    return tmp_path / "empty.pt", "is empty"


def _pickle(tmp_path):
    torch.save({"net_model": {"conv.weight": _Evil(tmp_path / "ran")}}, tmp_path / "evil.pt")
    return tmp_path / "evil.pt", "refused for safety"


def _garbage_safetensors(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage!!!}"
                                               + b"\x00" * 64)
    return tmp_path / "bad.safetensors", "not a readable .safetensors"


def _huge_header_safetensors(tmp_path):
    (tmp_path / "huge.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    return tmp_path / "huge.safetensors", "not a readable .safetensors"


def _safetensors_named_pt(tmp_path):
    """Read by its content, not its name: then refused for the key it lacks."""
    state = _official_state()
    del state["tail_bn.bias"]
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "renamed.pt"))
    return tmp_path / "renamed.pt", "lacks tail_bn.bias"


def _directory(tmp_path):
    (tmp_path / "ckpt").mkdir()
    return tmp_path / "ckpt", "is a directory"


def _sddpm_checkpoint(tmp_path):
    assert main(["convert", "--from", "sddpm-reference", str(DATA / "state_dict.safetensors"),
                 "-o", str(tmp_path / "ours.pt")]) == 0
    return tmp_path / "ours.pt", "already an sddpm checkpoint"


def _not_a_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    return tmp_path / "list.pt", "holds a list"


@pytest.mark.parametrize("make", [_truncated, _empty, _pickle, _garbage_safetensors,
                                  _huge_header_safetensors, _safetensors_named_pt, _directory,
                                  _sddpm_checkpoint,
                                  _not_a_dict])
def test_files_that_are_not_checkpoints_are_refused(capsys, tmp_path, make):
    path, needle = make(tmp_path)
    capsys.readouterr()
    out = tmp_path / "out.pt"
    err = _one_line_error(capsys, ["convert", "--from", "sddpm-reference", str(path),
                                   "-o", str(out)])
    assert needle in err, err
    assert not out.exists() and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--timesteps", "0"], "--timesteps must be a positive integer"),
    (["-T", "-2"], "--timesteps must be a positive integer"),
    (["--from", "spikingjelly"], "--from 'spikingjelly' is not known"),
    (["-o", "model.h5"], "must end in .pt"),
    (["--dataset", "imagenet"], "--dataset 'imagenet' is not one sddpm reads"),
    (["--image-size", "30"], "not divisible"),
])
def test_bad_options_are_refused(capsys, tmp_path, argv, needle):
    args = {"--from": "sddpm-reference", "-o": str(tmp_path / "out.pt")}
    rest = []
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag in args:
            args[flag] = value
        else:
            rest += [flag, value]
    argv = ["convert", str(DATA / "state_dict.safetensors"), *sum(args.items(), ()), *rest]
    assert needle in _one_line_error(capsys, argv)
    assert not (tmp_path / "out.pt").exists()


def test_the_summary_and_the_json_record(capsys, tmp_path):
    assert main(["convert", "--from", "sddpm-reference", str(DATA / "ckpt_reference_layout.pt"),
                 "-o", str(tmp_path / "a.pt")]) == 0
    text = capsys.readouterr().out
    for needle in ("ch 32, ch_mult [1, 2, 2], num_res_blocks 1", "1,086,989", "T = 4",
                   "v >= threshold", "not carried over: optim, x_T"):
        assert needle in text
    assert main(["convert", "--from", "sddpm-reference", str(DATA / "state_dict.safetensors"),
                 "-o", str(tmp_path / "b.pt"), "--json", "-T", "8"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model_config"]["timesteps"] == 8 and record["model_config"]["fires_on"] == ">="
    assert record["layout"] == "safetensors state_dict" and len(record["sha256"]) == 64
    assert record["fires_on"] == ">="


def test_every_later_command_takes_the_converted_checkpoint(capsys, tmp_path):
    from sddpm.export.cli import main as export_main
    from sddpm.export.nir_file import firing_rule, read_nir

    converted = tmp_path / "converted.pt"
    assert main(["convert", "--from", "sddpm-reference", str(DATA / "state_dict.safetensors"),
                 "-o", str(converted)]) == 0
    assert main(["sample", str(converted), "--sampler", "ddim", "--steps", "2", "--n", "2",
                 "--threshold", "0.997", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["energy", str(converted), "--steps", "2", "--n", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == "snn" and report["denoising_steps"] == 2
    assert report["breakdown_per_forward_mJ"]["ac"] > 0
    assert export_main([str(converted), "--to", "nir", "-o", str(tmp_path / "m.nir"),
                        "--threshold", "0.997"]) == 0
    graph = read_nir(tmp_path / "m.nir")
    assert firing_rule(graph) == ">="
    assert np.all(graph.nodes["up.0.neuron2"].v_threshold == np.nextafter(0.997, 0))


@pytest.mark.slow  # a 66.7 M-parameter model: about 15 s on 2 cores
def test_a_cifar10_sized_official_checkpoint_converts_and_prices_per_layer(tmp_path):
    """Random tensors under the official names and shapes of the paper's CIFAR-10 model."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, (shape, dtype) in expected_reference_tensors(get_preset("cifar10")).items():
        if not dtype.is_floating_point:
            state[name] = torch.tensor(0, dtype=dtype)
        elif name.endswith("running_var"):
            state[name] = torch.ones(shape)
        elif name.endswith(("running_mean", ".bias")):
            state[name] = torch.zeros(shape)
        elif len(shape) == 1:  # a BatchNorm's scale
            state[name] = torch.ones(shape)
        else:  # a fan-in-scaled draw: the network neither dies nor saturates
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            state[name] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    assert len(state) == 455
    official = _saved(tmp_path, state, "cifar10_official.pt")
    converted = tmp_path / "cifar10.pt"
    done = run_cli("sddpm", "convert", "--from", "sddpm-reference", official, "-o", converted)
    assert done.returncode == 0, done.stderr
    assert "ch 128, ch_mult [1, 2, 2, 4], num_res_blocks 2, 3 image channels" in done.stdout
    info = run_cli("sddpm", "info", converted, "--json")
    assert info.returncode == 0, info.stderr
    record = json.loads(info.stdout)
    assert record["params"] == 66_696_413
    assert record["config"]["fires_on"] == ">=" and record["converted_from"]["from"]
    energy = run_cli("sddpm", "energy", "--reproduce-table3", converted, "--steps", "1",
                     "--n", "1", "--json", timeout=900)
    assert energy.returncode == 0, energy.stderr
    rows = {r["model"]: r for r in json.loads(energy.stdout)["rows"]}
    # measured at T = 4 on this very architecture: every layer priced with its own rate
    assert rows["SDDPM-4T"]["rate_mapping"] == "per layer and timestep"
    assert rows["SDDPM-8T"]["rate_mapping"].startswith("network mean")
    assert rows["SDDPM-4T"]["ours_mJ"] > 0
