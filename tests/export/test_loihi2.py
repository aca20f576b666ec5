"""The Loihi 2 resource report: counted from the graph, against a limits file whose every
figure says where it comes from; what cannot map is flagged."""

import copy
import json

import nir
import numpy as np
import pytest
import torch

from sddpm.export.latency import balance
from sddpm.export.loihi2 import format_report, load_limits, resource_report
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return export_nir(build_model(get_preset("tiny"), "snn").double().eval())


def test_every_limit_has_a_source_or_is_an_estimate_with_a_reason():
    limits = load_limits()["limits"]
    assert {"neuro_cores_per_chip", "neurons_per_chip", "synapses_per_chip",
            "max_delay_steps"} <= set(limits)
    for name, entry in limits.items():
        assert entry["kind"] in ("published", "estimate"), name
        assert entry.get("source" if entry["kind"] == "published" else "why"), name
    assert limits["neuro_cores_per_chip"]["value"] == 128
    assert limits["max_delay_steps"]["value"] == 62


def test_the_report_counts_the_graphs_neurons_weights_and_delays(graph):
    report = resource_report(graph)
    populations = {n: node for n, node in graph.nodes.items() if isinstance(node, nir.IF)}
    # a conv that feeds several populations is stored once per population (core)
    into_populations = [graph.nodes[a] for a, b in graph.edges
                        if isinstance(graph.nodes[a], nir.Conv2d) and b in populations]
    total = report["total"]
    assert total["populations"] == len(populations)
    assert total["neurons"] == sum(int(np.size(p.v_threshold)) for p in populations.values())
    assert total["weights"] == sum(int(np.size(c.weight)) for c in into_populations)
    waits = balance(graph).waits
    assert total["longest_delay"] == max(w for (c, t), w in waits.items() if t in populations)
    for row in report["populations"]:
        assert row["synapses"] == row["neurons"] * row["fan_in"]
    assert total["chips"] == 1 and report["flags"] == []


def test_what_cannot_map_is_flagged(graph):
    limits = copy.deepcopy(load_limits())
    limits["limits"]["max_delay_steps"]["value"] = 5
    limits["limits"]["neurons_per_core"]["value"] = 300
    limits["limits"]["fan_in_axons_per_core"]["value"] = 500
    report = resource_report(graph, limits)
    flags = "\n".join(f["text"] for f in report["flags"])
    assert "above the 5-step maximum" in flags
    assert "does not split a population" in flags
    assert "above a core's 500 input axons" in flags
    big = [r for r in report["populations"] if r["neurons"] > 300]
    assert big and all(r["cores"] >= 2 for r in big)
    text = format_report(report)
    assert "cannot map as it stands" in text and "not published" in text


def test_export_prints_the_report_and_writes_it_into_the_manifest(tiny_checkpoint, tmp_path):
    done = run_cli("sddpm-export", "--to", "lava", tiny_checkpoint, "-o", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    assert "Loihi 2 resources" in done.stdout and "neuro-cores" in done.stdout
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    resources = manifest["loihi2_resources"]
    assert resources["chip"] == "Loihi 2" and resources["total"]["neurons"] > 0
    assert len(resources["populations"]) == resources["total"]["populations"]
