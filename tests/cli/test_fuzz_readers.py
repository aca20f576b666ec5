"""Malformed inputs for every command that reads a checkpoint: a table of mutations.

Each case must end in exit status 2, one ``sddpm: error:`` (or ``sddpm-export:``) line
naming the problem, no traceback and no output file. The checkpoint cases run against
``info``, ``sample``, ``energy`` and ``sddpm-export --to nir`` (the readers share one
loader, so a case that passes one and fails another is a bug of that command).
"""

import math
import os

import pytest
import torch

from sddpm.checkpoint import load_checkpoint
from sddpm.cli.main import main
from sddpm.export.cli import main as export_main
from tests.cli.test_main import _one_line_error


def _edited_copy(source, fn, path, checksum: bool = True):
    """``source`` loaded, edited by ``fn`` as a hand (or a bad disk) would and written to
    ``path`` by plain ``torch.save``: its recorded checksum stays as it was, or, with
    ``checksum=False``, it is an old-format file with none."""
    payload = load_checkpoint(source)
    payload.pop("integrity")
    if not checksum:
        payload.pop("tensors_sha256", None)
    fn(payload)
    torch.save(payload, path)
    return path


def _edit(fn):
    """A case: an edited copy of the tiny checkpoint."""
    return lambda tmp_path, tiny_checkpoint: _edited_copy(tiny_checkpoint, fn,
                                                          tmp_path / "case.pt")


def _unchecked(fn):
    """The same edit in a file of the old format, written before checksums."""
    return lambda tmp_path, tiny_checkpoint: _edited_copy(tiny_checkpoint, fn,
                                                          tmp_path / "case.pt", checksum=False)


def _raw(data: bytes, name="case.pt"):
    def make(tmp_path, tiny_checkpoint):
        (tmp_path / name).write_bytes(data)
        return tmp_path / name
    return make


def _config(**changes):
    return _edit(lambda p: p["model_config"].update(changes))


def _first_weight(p):
    return next(k for k, v in p["model"].items() if v.dim() == 4)


def _garbage(p):
    k = _first_weight(p)
    w = p["model"][k].flatten()
    w[: min(1024, w.numel())] = 2e38
    p["model"][k] = w.reshape(p["model"][k].shape)
    if p.get("ema"):
        p["ema"][k] = p["model"][k].clone()


def _nan(p):
    k = _first_weight(p)
    p["model"][k] = p["model"][k].clone()
    p["model"][k].view(-1)[0] = math.nan
    if p.get("ema"):
        p["ema"][k] = p["model"][k].clone()


def _reshape(p):
    k = _first_weight(p)
    for key in ("model", "ema"):
        if p.get(key):
            p[key][k] = torch.zeros(3, 3, 3, 3)


def _drop(p):
    k = _first_weight(p)
    for key in ("model", "ema"):
        if p.get(key):
            del p[key][k]


def _symlink_loop(tmp_path, tiny_checkpoint):
    (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
    return tmp_path / "a.pt"


def _directory(tmp_path, tiny_checkpoint):
    (tmp_path / "dir.pt").mkdir()
    return tmp_path / "dir.pt"


def _unreadable(tmp_path, tiny_checkpoint):
    path = tmp_path / "locked.pt"
    path.write_bytes(tiny_checkpoint.read_bytes())
    path.chmod(0)
    return path


def _preset_mismatch(p):
    # the tiny tensors under the name of another preset
    p["model_config"]["name"] = "fmnist-small"


CASES = {
    "text renamed .pt": (_raw(b"hello, this is not a checkpoint\n" * 4), "damaged"),
    "random bytes": (_raw(bytes(range(256)) * 8), "damaged"),
    "empty": (_raw(b""), "empty"),
    "directory": (_directory, "is a directory"),
    "symlink loop": (_symlink_loop, "symlink loop"),
    "ch -1": (_config(ch=-1), "ch"),
    "ch_mult empty": (_config(ch_mult=[]), "ch_mult"),
    "ch_mult zero": (_config(ch_mult=[1, 0]), "ch_mult"),
    "timesteps 0": (_config(timesteps=0), "timesteps"),
    "image_size 0": (_config(image_size=0), "image_size"),
    "ch a string": (_config(ch="eight"), "ch"),
    "diffusion_steps 0": (_config(diffusion_steps=0), "diffusion_steps"),
    "num_res_blocks 0": (_config(num_res_blocks=0), "num_res_blocks"),
    "model not a dict": (_edit(lambda p: p.update(model=[1, 2])), "model"),
    "model a tensor": (_edit(lambda p: p.update(model=torch.zeros(3))), "model"),
    "ema not a dict": (_edit(lambda p: p.update(ema=[torch.zeros(1)])), "ema"),
    "arch unknown": (_edit(lambda p: p.update(arch="transformer")), "arch"),
    "step negative": (_edit(lambda p: p.update(step=-5)), "step"),
    "garbage weights": (_edit(_garbage), "checksum"),
    "garbage weights, no checksum": (_unchecked(_garbage), "beyond any trained weight"),
    "nan weight": (_edit(_nan), "not finite"),
    "unreadable": (_unreadable, "permission denied"),
    "wrong shape": (_edit(_reshape), "expected"),
    "tensor missing": (_edit(_drop), "lacks"),
    "preset name over other tensors": (_edit(_preset_mismatch), "fmnist-small"),
}

COMMANDS = {
    "info": lambda ck, out: ["info", ck, "--json"],
    "sample": lambda ck, out: ["sample", ck, "--n", "1", "--sampler", "ddim", "--steps", "1",
                               "--out", out / "grid.png"],
    "energy": lambda ck, out: ["energy", ck, "--n", "1", "--steps", "1", "--out", out / "e"],
    "export": lambda ck, out: ["export", ck, "--to", "nir", "-o", out / "m.nir"],
    "export-lava": lambda ck, out: ["export", ck, "--to", "lava", "-o", out / "bundle"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_a_malformed_checkpoint_gets_one_line(capsys, tmp_path, tiny_checkpoint, case, command):
    make, needle = CASES[case]
    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads every file")
    checkpoint = make(tmp_path, tiny_checkpoint)
    out = tmp_path / "out"
    out.mkdir()
    err = _one_line_error(capsys, COMMANDS[command](checkpoint, out))
    assert needle in err, err
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not written, written  # nothing written (an output folder may be made first)


@pytest.mark.parametrize("case", ["random bytes", "ch -1", "garbage weights", "wrong shape",
                                  "model not a dict", "timesteps 0"])
def test_simulate_refuses_a_damaged_reference_checkpoint_before_lava(capsys, tmp_path,
                                                                    tiny_checkpoint,
                                                                    tiny_bundle, case):
    make, needle = CASES[case]
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["simulate", tiny_bundle, "--checkpoint",
                                   make(tmp_path, tiny_checkpoint), "--out", out])
    assert needle in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


# -- bundles whose checksums were recomputed after the damage ------------------------

@pytest.fixture(scope="module")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "tiny-lava"
    assert export_main([str(tiny_checkpoint), "--to", "lava", "-o", str(folder)]) == 0
    return folder


def _rewritten(bundle, tmp_path, change):
    """A copy of ``bundle`` whose graph ``change`` edits, the manifest's checksum redone:
    what a careless tool (or a hostile hand) leaves behind."""
    import json
    import shutil

    from sddpm.export.lava_bundle import GRAPH_FILE, MANIFEST
    from sddpm.export.nir_file import read_nir, write_nir
    from sddpm.files import file_sha256

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    graph = read_nir(copy / GRAPH_FILE)
    change(graph)
    write_nir(graph, copy / GRAPH_FILE)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"][GRAPH_FILE]["sha256"] = file_sha256(copy / GRAPH_FILE)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


def _drop_node(graph):
    name = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Conv2d")
    del graph.nodes[name]


def _dangling_edge(graph):
    graph.edges.append(("encoder.neuron", "nowhere"))


def _conv_shape(graph):
    import numpy as np

    node = next(node for node in graph.nodes.values() if type(node).__name__ == "Conv2d")
    node.weight = np.zeros((node.weight.shape[0] + 1, *node.weight.shape[1:]),
                           dtype=node.weight.dtype)
    node.bias = np.zeros(node.weight.shape[0], dtype=node.weight.dtype)


BUNDLE_CASES = {
    "a node dropped": (_drop_node, "not among its nodes"),
    "a dangling edge": (_dangling_edge, "nowhere"),
    "a conv of the wrong shape": (_conv_shape, "channels"),
}


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_a_damaged_bundle_is_refused_before_lava_starts(capsys, tmp_path, tiny_bundle, case,
                                                        fixed):
    change, needle = BUNDLE_CASES[case]
    bundle = _rewritten(tiny_bundle, tmp_path, change)
    out = tmp_path / "out"
    argv = ["simulate", bundle, "--denoise-steps", "1", "--out", out]
    err = _one_line_error(capsys, argv + (["--fixed-point"] if fixed else []))
    assert needle in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


# -- the other readers: classifier (eval), spike profile (energy), last.pt (train) ----

def _classifier_case(change):
    def make(tmp_path):
        from sddpm.shipped import CLASSIFIER, shipped_path

        return _edited_copy(shipped_path(CLASSIFIER), change, tmp_path / "classifier.pt")
    return make


def _classifier_reshaped(p):
    name = next(iter(p["model"]))
    p["model"][name] = torch.zeros(2, 2)


CLASSIFIER_CASES = {
    "wrong shape": (_classifier_case(_classifier_reshaped), "has shape [2, 2]"),
    "a tensor missing": (_classifier_case(lambda p: p["model"].popitem()), "lacks tensor"),
    "model not a dict": (_classifier_case(lambda p: p.update(model=[1])), "model is a list"),
    "not a classifier": (_classifier_case(lambda p: p.update(arch="snn")), "not a Fashion"),
}


@pytest.mark.parametrize("case", CLASSIFIER_CASES)
def test_eval_refuses_a_bad_classifier_before_sampling(capsys, tmp_path, tiny_checkpoint, case):
    import time

    make, needle = CLASSIFIER_CASES[case]
    t0 = time.perf_counter()
    err = _one_line_error(capsys, ["eval", tiny_checkpoint, "--classifier", make(tmp_path),
                                   "--n", "1000", "--out", tmp_path / "r.json"])
    assert needle in err, err
    assert time.perf_counter() - t0 < 10  # not after 1,000 images
    assert not (tmp_path / "r.json").exists()


def test_energy_refuses_a_profile_with_nan_rates(capsys, tmp_path, tiny_checkpoint):
    import h5py

    assert main(["energy", str(tiny_checkpoint), "--n", "1", "--steps", "1",
                 "--out", str(tmp_path / "e")]) == 0
    capsys.readouterr()
    profile = next((tmp_path / "e").glob("*.h5"))
    with h5py.File(profile, "r+") as f:
        rates = f["input_rate"][()]
        rates.flat[3] = float("nan")
        f["input_rate"][...] = rates
    err = _one_line_error(capsys, ["energy", "--profile", profile, "--json"])
    assert "input_rate holds nan" in err, err


@pytest.mark.parametrize("case", ["random bytes", "ch -1", "garbage weights", "wrong shape"])
def test_train_resume_refuses_a_damaged_last_checkpoint(capsys, tmp_path, tiny_checkpoint, case):
    make, needle = CASES[case]
    run = tmp_path / "run"
    run.mkdir()
    make(tmp_path, tiny_checkpoint).rename(run / "last.pt")
    err = _one_line_error(capsys, ["train", "--preset", "tiny", "--steps", "8", "--resume",
                                   "--out", run])
    assert needle in err or "does not fit" in err, err


@pytest.mark.parametrize("flag", ["--hardware", "--profile"])
@pytest.mark.parametrize("case, needle", [("directory", "is a directory"),
                                          ("empty", "is empty"),
                                          ("text", "not")])
def test_energy_refuses_bad_cost_and_profile_files(capsys, tmp_path, tiny_checkpoint, flag,
                                                   case, needle):
    suffix = ".json" if flag == "--hardware" else ".h5"
    path = tmp_path / f"file{suffix}"
    if case == "directory":
        path.mkdir()
    else:
        path.write_text("" if case == "empty" else "not a file of that kind\n")
    argv = ["energy", "--json", flag, path]
    if flag == "--hardware":
        argv += [tiny_checkpoint]
    err = _one_line_error(capsys, argv)
    assert needle in err, err
