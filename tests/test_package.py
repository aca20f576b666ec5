"""The installed package: one `sddpm`, everything it reads at run time inside it, its
layers as pyproject.toml declares them (import-linter, on the wheel itself)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT

# checkout folder -> installed package (pyproject.toml's package-dir)
FOLDERS = {"sddpm": "sddpm", "export": "sddpm/export", "simulations": "sddpm/simulations",
           "hardware": "sddpm/hardware", "cli": "sddpm/cli", "checkpoints": "sddpm/shipped"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the files a commit would hold (tracked, or new and not
    ignored), as from a fresh clone: no build leftovers, no ignored outputs."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    src = tmp_path_factory.mktemp("clone")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():  # a file deleted but not yet committed is skipped
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    # no isolation: the installed setuptools and wheel, nothing fetched
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                    "--outdir", str(out), str(src)], check=True, capture_output=True)
    (path,) = out.glob("sddpm-*.whl")
    return path


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(where)
    return where


def test_the_wheel_holds_one_top_level_package_and_its_data(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top = {n.split("/")[0] for n in names}
    assert top == {"sddpm", "sddpm-0.1.0.dist-info"}  # no export/, hardware/, simulations/
    for folder, package in FOLDERS.items():
        for source in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{source.relative_to(ROOT / folder)}" in names, source
    costs = {Path(n).name for n in names if n.startswith("sddpm/hardware/costs/")}
    assert costs == {p.name for p in (ROOT / "hardware" / "costs").glob("*.json")}
    assert costs >= {"45nm-fp32.json", "loihi1.json"}
    shipped = {Path(n).name for n in names if n.startswith("sddpm/shipped/")}
    assert {"fmnist-small-snn.pt", "fmnist-small-ann.pt", "fmnist-classifier.pt"} <= shipped
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read("sddpm-0.1.0.dist-info/entry_points.txt").decode()
    assert "sddpm = sddpm.cli.main:main" in entry_points
    assert "sddpm-export = sddpm.export.cli:main" in entry_points


def _run_in(unpacked: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python with the unpacked wheel first on the path, started outside the checkout."""
    env = {"PYTHONPATH": str(unpacked), "PATH": str(BIN)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_installed_wheel_finds_its_data_and_lava_finds_its_models(unpacked, tmp_path):
    code = """
import sddpm, sddpm.hardware.hardware_costs as costs
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.evaluation import DEFAULT_CLASSIFIER
from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
from sddpm.export.lava_delay.process import DelayLine
print(sddpm.__file__)
print(SHIPPED_CHECKPOINT, SHIPPED_CHECKPOINT.is_file(), DEFAULT_CLASSIFIER.is_file())
print(costs.load_hardware_costs("loihi1").name, costs.available_hardware())
models = ProcGroupDiGraphs._find_proc_models(DelayLine(shape=(2,), delay=3))
print(sorted(f"{m.__module__}.{m.__name__}" for m in models))
"""
    result = _run_in(unpacked, code, tmp_path)
    assert result.returncode == 0, result.stderr
    where, shipped, costs, models = result.stdout.strip().splitlines()[-4:]
    assert where.startswith(str(unpacked))  # the wheel's copy, not the checkout's
    assert shipped.startswith(str(unpacked)) and shipped.endswith("True True")
    assert costs.startswith("loihi1 ") and "45nm-fp32" in costs
    assert models == ("['sddpm.export.lava_delay.models.PyDelayLineFixed', "
                      "'sddpm.export.lava_delay.models.PyDelayLineFloat']")


def _lint_imports(site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"),
                           "--no-cache", "--no-logo"], cwd=site, capture_output=True,
                          text=True, timeout=300,
                          env={"PYTHONPATH": str(site), "PATH": str(BIN)})


def test_the_layers_hold_in_the_wheel(unpacked):
    result = _lint_imports(unpacked)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    # the model side reaching up to the export
    ("sddpm/train.py", "import sddpm.export.graph", "the data's order"),
    # the export reaching up to the simulations
    ("sddpm/export/latency.py", "from sddpm.simulations import lava_runner", "the data's order"),
    # a stage reaching up to the command line
    ("sddpm/hardware/energy.py", "import sddpm.cli.main", "the data's order"),
    # the pre-namespace import, or PyPI's package of that name
    ("sddpm/files.py", "import hardware", "nothing imports a top-level"),
])
def test_a_backward_import_breaks_the_contract(unpacked, tmp_path, module, line, contract):
    site = tmp_path / "site"
    shutil.copytree(unpacked, site)
    with open(site / module, "a") as f:
        f.write(f"\n{line}  # deliberately backward\n")
    result = _lint_imports(site)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
