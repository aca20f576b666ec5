"""The deployment bundle: written by sddpm-export --to lava, refused when damaged."""

import json
import shutil

import pytest

from sddpm.errors import SddpmError
from sddpm.export.lava_bundle import FORMAT_VERSION, MANIFEST, load_bundle, load_fixed_point
from sddpm.files import file_sha256
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "tiny-lava"
    result = run_cli("sddpm-export", "--to", "lava", tiny_checkpoint, "-o", folder, "--json")
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout)


def test_bundle_holds_graph_manifest_and_schedule(bundle):
    folder, summary = bundle
    graph, manifest = load_bundle(folder)
    assert manifest["timesteps"] == 4 and manifest["latency_steps"] == summary["latency_steps"]
    assert set(manifest["versions"]) >= {"lava-nc", "nir", "numpy", "torch", "sddpm"}
    assert manifest["source"]["sha256"] and manifest["source"]["step"] > 0
    assert all(n.weight.dtype.name == "float32" for n in graph.nodes.values()
               if hasattr(n, "weight"))
    counts = summary["processes"]
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_process_counts_match_the_built_lava_network(bundle):
    from sddpm.export.nir_to_lava import LavaNetwork

    folder, summary = bundle
    graph, manifest = load_bundle(folder)
    network = LavaNetwork(graph, manifest["timesteps"])  # built, never run
    assert len(network.processes) == summary["processes"]["total"]


def _copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle[0], target)
    return target


def test_corrupt_incomplete_or_mismatched_bundles_are_refused(bundle, tmp_path):
    folder = _copy(bundle, tmp_path)
    data = bytearray((folder / "model.nir").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.nir").write_bytes(bytes(data))
    with pytest.raises(SddpmError, match="does not match its checksum"):
        load_bundle(folder)
    (folder / "model.nir").unlink()
    with pytest.raises(SddpmError, match="lacks model.nir"):
        load_bundle(folder)

    folder = _copy(bundle, tmp_path / "v")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["versions"]["lava-nc"] = "0.9.0"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SddpmError, match=r"written with lava-nc 0.9.0 \(here 0.10.0\)"):
        load_bundle(folder)
    manifest["format_version"] = 7
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SddpmError, match="format version 7"):
        load_bundle(folder)
    for field, value in (("files", []), ("versions", None), ("timesteps", "4")):
        broken = json.loads(json.dumps(manifest))
        broken["format_version"] = FORMAT_VERSION
        broken[field] = value
        (folder / MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(SddpmError, match=f"manifest field '{field}'"):
            load_bundle(folder)
    (folder / MANIFEST).write_text("{broken")
    with pytest.raises(SddpmError, match="not valid JSON"):
        load_bundle(folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(SddpmError, match="has no manifest.json"):
        load_bundle(folder)
    with pytest.raises(SddpmError, match="is not a folder"):
        load_bundle(tmp_path / "nothing")


def test_simulate_refuses_a_damaged_bundle_in_one_line(bundle, tmp_path):
    folder = _copy(bundle, tmp_path)
    (folder / "model.nir").write_bytes(b"x")
    result = run_cli("sddpm", "simulate", folder, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "checksum" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--sampler", "karras-euler"), "unknown sampler 'karras-euler'"),
    (("--backend", "loihi"), "unknown backend 'loihi'"),
])
def test_simulate_options_are_checked_first(bundle, tmp_path, args, message):
    result = run_cli("sddpm", "simulate", bundle[0], "--out", tmp_path / "o", *args)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_simulate_runs_the_bundle_and_reports(bundle, tmp_path):
    out = tmp_path / "sim"
    result = run_cli("sddpm", "simulate", bundle[0], "--denoise-steps", "2", "--out", out,
                     "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["denoise_steps"] == 2 and report["lava_processes"] > 0
    assert report["worst_spike_agreement"] >= 0.999 and report["max_eps_rel_error"] < 1e-3
    assert report["lava_steps"] % 4 == 0 and report["reference"].startswith("reference executor")
    for name in ("simulate.json", "images_lava.png", "images_torch.png", "comparison.png"):
        assert (out / name).stat().st_size > 0


def test_manifest_must_agree_with_the_graph_and_name_plain_files(bundle, tmp_path):
    folder = _copy(bundle, tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    edited = dict(manifest, timesteps=2)
    (folder / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(SddpmError, match="T or model config differs"):
        load_bundle(folder)
    outside = dict(manifest, files={"../model.nir": manifest["files"]["model.nir"]})
    (folder / MANIFEST).write_text(json.dumps(outside))
    with pytest.raises(SddpmError, match="only plain names"):
        load_bundle(folder)


def test_the_bundle_carries_fixed_point_parameters_for_its_graph(bundle, tmp_path):
    import h5py

    folder, summary = bundle
    graph, manifest = load_bundle(folder)
    fixed = load_fixed_point(folder, graph, manifest)
    assert manifest["fixed_point"]["weight_bits"] == fixed.weight_bits == 8
    assert set(fixed.weights) == {n for n, node in graph.nodes.items() if hasattr(node, "weight")}
    # damaged inside, checksum updated: the range check still refuses it
    copy = _copy(bundle, tmp_path)
    path = copy / "fixed_point.h5"
    with h5py.File(path, "r+") as f:
        name = next(iter(f["targets"]))
        f["targets"][name].attrs["vth"] = 0
    edited = json.loads((copy / MANIFEST).read_text())
    edited["files"]["fixed_point.h5"]["sha256"] = file_sha256(path)
    (copy / MANIFEST).write_text(json.dumps(edited))
    graph, manifest = load_bundle(copy)
    with pytest.raises(SddpmError, match="does not fit the bundle's graph"):
        load_fixed_point(copy, graph, manifest)
    with pytest.raises(SddpmError, match="lists no fixed-point parameters"):
        load_fixed_point(copy, graph, dict(manifest, fixed_point=None))


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_simulate_fixed_point_matches_the_emulation_and_reports_the_float_gap(bundle,
                                                                               tmp_path):
    out = tmp_path / "fixed"
    result = run_cli("sddpm", "simulate", bundle[0], "--fixed-point", "--n", "2",
                     "--denoise-steps", "2", "--out", out, "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["precision"] == "fixed_pt" and report["weight_bits"] == 8
    assert "fixed-point emulation" in report["reference"]
    # Lava fixed_pt against the PyTorch emulation: bit for bit
    assert report["spike_mismatches"] == 0 < report["reference_spikes"]
    # equal integer streams; the float decoding may round in another order (~1e-16)
    assert report["max_eps_rel_error"] < 1e-12 and report["image_max_abs_difference"] < 1e-6
    gap = report["against_float"]
    assert len(gap["eps_rel_error"]) == 2 and all(0 < e < 1 for e in gap["eps_rel_error"])
    for name in ("images_lava.png", "images_float.png", "comparison.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_finetune_fixed_point_writes_a_bundle_lava_runs_bit_exact(bundle, tmp_path):
    out = tmp_path / "tuned"
    result = run_cli("sddpm", "finetune", bundle[0], "--fixed-point", "--out", out,
                     "--steps", "3", "--batch", "4", "--lr", "1e-3", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["integer_weights_changed"] > 0 and report["steps"] == 3
    assert report["probe_loss_float"] > 0 and report["probe_loss_after"] > 0
    for name in ("finetune.json", "finetune.csv", "finetune.png"):
        assert (out / name).stat().st_size > 0
    graph, manifest = load_bundle(out)
    assert manifest["source"]["finetune_steps"] == 3
    sim = run_cli("sddpm", "simulate", out, "--fixed-point", "--denoise-steps", "1",
                  "--out", tmp_path / "sim", "--json", timeout=600)
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["spike_mismatches"] == 0
    # its weights are no checkpoint's any more: comparing with one is refused
    sim = run_cli("sddpm", "simulate", out, "--checkpoint", manifest["source"]["checkpoint"],
                  "--out", tmp_path / "sim2")
    assert sim.returncode == 2 and "was fine-tuned" in sim.stderr


@pytest.mark.parametrize("args, message", [
    ((), "pass --fixed-point"),
    (("--fixed-point", "--lr", "0"), "--lr must be positive"),
])
def test_finetune_options_are_checked_first(bundle, tmp_path, args, message):
    result = run_cli("sddpm", "finetune", bundle[0], "--out", tmp_path / "o", *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (("--to", "lava", "--weight-bits", "9"), "--weight-bits must lie in [2, 8]"),
    (("--to", "nir", "--weight-bits", "8"), "--weight-bits is for --to lava"),
])
def test_export_weight_bits_are_checked(tiny_checkpoint, tmp_path, args, message):
    result = run_cli("sddpm-export", tiny_checkpoint, "-o", tmp_path / "x", *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "x").exists()
