import json

import nir
import numpy as np
import pytest

from sddpm.export.nir_file import read_nir
from tests.conftest import run_cli


def test_export_to_nir_writes_the_graph_and_a_summary(tiny_checkpoint, tmp_path):
    out = tmp_path / "tiny.nir"
    result = run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    graph = read_nir(out)
    assert summary["nodes"] == len(graph.nodes) and summary["edges"] == len(graph.edges)
    pops = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert summary["populations"] == len(pops)
    assert summary["neurons"] == sum(p.v_threshold.size for p in pops)
    ups = [n for n in graph.nodes.values() if type(n).__name__ == "Upsample2d"]
    assert summary["host_macs_per_forward"] > 0 and summary["extension_nodes"] == len(ups) == 1
    assert summary["dtype"] == "float32"
    assert all(n.weight.dtype.name == "float32" for n in graph.nodes.values()
               if isinstance(n, nir.Conv2d))
    text = run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out)
    assert "IF populations" in text.stdout and "host side" in text.stdout


@pytest.mark.parametrize("args, message", [
    (("--to", "nir", "-o", "x.h5"), "must end in .nir"),
    (("--to", "nir", "--diffusion-step", "1000"), "must lie in [0, 999]"),
    (("--to", "onnx"), "invalid choice"),
])
def test_bad_export_options_are_one_line(tiny_checkpoint, args, message):
    result = run_cli("sddpm-export", tiny_checkpoint, *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_checkpoint_is_one_line(tmp_path):
    result = run_cli("sddpm-export", "--to", "nir", tmp_path / "none.pt")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_threshold_guidance_and_single_step_export(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.nir"
    full = json.loads(run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out,
                              "--json").stdout)
    result = run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out, "--json",
                     "--threshold", "0.95", "--diffusion-step", "10")
    assert result.returncode == 0, result.stderr
    one_step = json.loads(result.stdout)
    graph = read_nir(out)
    thresholds = np.concatenate([n.v_threshold.ravel() for n in graph.nodes.values()
                                 if isinstance(n, nir.IF)])
    assert np.all(thresholds == np.float32(0.95))  # written as float32, the default dtype
    assert one_step["inputs"] == ["input"]
    # the time embedding is folded into the graph: the host no longer computes it
    assert one_step["host_macs_per_forward"] < full["host_macs_per_forward"]


def test_output_must_not_be_the_checkpoint(tmp_path, tiny_checkpoint):
    import shutil

    ckpt = tmp_path / "model.nir"
    shutil.copy(tiny_checkpoint, ckpt)
    result = run_cli("sddpm-export", "--to", "nir", ckpt)
    assert result.returncode == 2 and "is the checkpoint itself" in result.stderr
    assert ckpt.read_bytes() == tiny_checkpoint.read_bytes()


def test_a_threshold_map_reaches_each_population_of_the_export(tiny_checkpoint, tmp_path):
    from sddpm.export.nir_file import graph_info

    out = tmp_path / "map.nir"
    result = run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out,
                     "--threshold", '{"up.*": 0.9}')
    assert result.returncode == 0, result.stderr
    graph = read_nir(out)
    populations = graph_info(graph)["populations"]
    seen = set()
    for population in populations:
        expected = np.float32(0.9 if population["torch"].startswith("up.") else 1.0)
        assert np.all(graph.nodes[population["node"]].v_threshold == expected), population
        seen.add(float(expected))
    assert seen == {float(np.float32(0.9)), 1.0}
    bad = run_cli("sddpm-export", "--to", "nir", tiny_checkpoint, "-o", out,
                  "--threshold", '{"upp.*": 0.9}')
    assert bad.returncode == 2 and "matches no IF population" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
