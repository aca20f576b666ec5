"""The Lava run's estimate: the processes it counts are the ones built, and a run that
cannot fit is refused in one line before Lava compiles anything."""

import json
import time

import pytest
import torch

from sddpm.errors import SddpmError
from sddpm.export.nir_to_lava import LavaNetwork
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset
from sddpm.simulations.budget import check_budget, estimate_run, parse_size
from tests.conftest import run_cli


@pytest.mark.parametrize("text, size", [("16GB", 16 * 10**9), ("1MB", 10**6),
                                        ("512MiB", 512 * 2**20), ("2.5 gb", 25 * 10**8),
                                        ("1000", 1000)])
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "0", "16 parsecs", "1e"])
def test_a_size_that_is_none_is_one_clear_error(text):
    with pytest.raises(SddpmError, match="--max-memory"):
        parse_size(text)


@pytest.fixture(scope="module")
def tiny_graph():
    torch.manual_seed(0)
    return export_nir(build_model(get_preset("tiny"), "snn").double().eval())


@pytest.mark.parametrize("taps", [False, True, ["down.0.neuron1", "up.4.neuron2"]])
def test_the_estimate_counts_the_processes_the_network_builds(tiny_graph, taps):
    estimate = estimate_run(tiny_graph, 4, taps=taps if isinstance(taps, bool) else len(taps))
    network = LavaNetwork(tiny_graph, 4, tap_spikes=taps)  # built, never compiled
    assert estimate.processes == len(network.processes)
    assert estimate.counts["conv"] == len(network._convs)
    assert estimate.counts["delay_lines"] == len(network._delayed)


def test_the_estimate_grows_with_what_the_run_holds(tiny_graph):
    one = estimate_run(tiny_graph, 4, images=1, denoise_steps=1, parent_bytes=10**9)
    more = estimate_run(tiny_graph, 4, images=4, denoise_steps=3, parent_bytes=10**9)
    deeper = estimate_run(tiny_graph, 4, channel_size=64, parent_bytes=10**9)
    leaner = estimate_run(tiny_graph, 4, parent_bytes=10**8)
    assert more.lava_steps == 3 * (one.lava_steps + 3 * 4)  # pipelined: T more per image
    assert more.memory_bytes > one.memory_bytes
    assert deeper.parts["channels"] == 32 * one.parts["channels"]
    # every forked process copies 8 bytes of page table per 4 KiB page of its parent
    assert one.parts["page_tables"] - leaner.parts["page_tables"] == pytest.approx(
        one.processes * 9 * 10**8 * 8 / 4096, rel=1e-6)
    fixed = estimate_run(tiny_graph, 4, fixed=True, parent_bytes=10**9)
    assert fixed.parts["state"] < one.parts["state"]  # int32 against float64


def test_a_run_above_the_limit_is_refused_naming_estimate_and_limit(tiny_graph):
    estimate = estimate_run(tiny_graph, 4)
    with pytest.raises(SddpmError, match=r"needs an estimated .* more than --max-memory "
                                         r"\(1.0 MB\)"):
        check_budget(estimate, max_memory=10**6)
    assert check_budget(estimate, max_memory=10**12) == []


def test_by_default_what_this_process_holds_is_not_counted_twice(tiny_graph, monkeypatch):
    import sddpm.simulations.budget as budget

    estimate = estimate_run(tiny_graph, 4, parent_bytes=10**9)
    # the estimate counts this process's 1 GB; the machine's available memory lacks it
    monkeypatch.setattr(budget, "available_memory", lambda: estimate.memory_bytes - 10**9 // 2)
    assert check_budget(estimate) == []
    monkeypatch.setattr(budget, "available_memory", lambda: estimate.memory_bytes - 10**9 - 1)
    with pytest.raises(SddpmError, match="available memory and this process's"):
        check_budget(estimate)


@pytest.mark.parametrize("extra", [(), ("--fixed-point",)])
def test_simulate_refuses_a_bundle_too_large_before_compiling(lava_bundle, tmp_path, extra):
    out = tmp_path / "sim"
    t0 = time.perf_counter()
    done = run_cli("sddpm", "simulate", lava_bundle, "--max-memory", "1MB", "--out", out, *extra)
    seconds = time.perf_counter() - t0
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "needs an estimated" in lines[0] and "--max-memory (1.0 MB)" in lines[0]
    assert not (out / "simulate.json").exists()
    assert seconds < 60  # a compiled tiny run forks ~80 processes and takes longer


def test_simulate_reads_the_size_before_the_bundle(lava_bundle, tmp_path):
    done = run_cli("sddpm", "simulate", lava_bundle, "--max-memory", "lots", "--out", tmp_path)
    assert done.returncode == 2 and "not a size" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a compiled Lava network
def test_the_estimate_is_in_the_report_of_a_run(lava_bundle, tmp_path):
    pytest.importorskip("lava")
    report_path = tmp_path / "sim" / "simulate.json"
    done = run_cli("sddpm", "simulate", lava_bundle, "--denoise-steps", "1", "--steps", "1",
                   "--out", tmp_path / "sim", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["estimate"]["processes"] == report["lava_processes"]
    assert report["estimate"]["lava_steps"] == report["lava_steps"]
