"""What a command loads before it has work to do: `--help` reads no NIR and no Lava."""

import json
import subprocess
import sys

import pytest

HEAVY = ("nir", "nirtorch", "lava", "torch")


def _loaded_after(code: str) -> set:
    probe = (f"import json, sys\n{code}\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("command", ["train", "sample", "energy", "simulate", "demo"])
def test_help_of_a_command_imports_neither_nir_nor_lava(command):
    loaded = _loaded_after("from sddpm.cli.main import main\n"
                           f"try:\n    main([{command!r}, '--help'])\n"
                           "except SystemExit:\n    pass")
    assert "sddpm" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_export_command_line_parses_without_torch():
    loaded = _loaded_after("from sddpm.export.cli import build_parser\n"
                           "build_parser().parse_args(['x.pt', '--to', 'nir'])")
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("module", ["sddpm.export.graph", "sddpm.export.latency",
                                    "sddpm.export.quantize"])
def test_graph_helpers_and_the_schedule_load_no_torch(module):
    loaded = _loaded_after(f"import {module}")
    assert "nir" in loaded and "torch" not in loaded and "lava" not in loaded
