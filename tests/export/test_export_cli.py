import json

import nir
import pytest

from export.nir_file import read_nir
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
    (("--to", "lava"), "Lava exporter is not built yet"),
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
