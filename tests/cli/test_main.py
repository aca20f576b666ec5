import numpy as np
import pytest
import torch

from sddpm.cli.main import main
from tests.conftest import run_cli


def _one_line_error(capsys, argv):
    """Run ``sddpm ARGV`` (``sddpm-export`` for ``["export", ...]``) in-process: exit 2
    and one ``error:`` line, no traceback; returns that line."""
    from sddpm.export.cli import main as export_main

    run, args = (export_main, argv[1:]) if argv[0] == "export" else (main, argv)
    try:
        code = run([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "error:" in err, err
    return err


def test_missing_checkpoint(capsys, tmp_path):
    err = _one_line_error(capsys, ["sample", str(tmp_path / "nope.pt")])
    assert "does not exist" in err


def test_corrupt_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    assert "is damaged" in _one_line_error(capsys, ["sample", str(bad)])


def test_malicious_checkpoint_never_runs(capsys, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "sddpm-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    assert "refused" in _one_line_error(capsys, ["sample", str(tmp_path / "evil.pt")])
    assert not marker.exists()


@pytest.mark.parametrize("argv,needle", [
    (["train", "--preset", "imagenet"], "unknown preset"),
    (["train", "--preset", "tiny", "--timesteps", "0"], "positive integer"),
    (["train", "--preset", "tiny", "-T", "-3"], "positive integer"),
    (["train", "--preset", "tiny", "--arch", "transformer"], "architecture"),
    (["train", "--preset", "mnist", "--data-dir", "/nonexistent"], "does not exist"),
    (["info", "--preset", "nope"], "unknown preset"),
    (["sample", "x.pt", "--threshold", "0"], "positive number"),
    (["sample", "x.pt", "--threshold", "-1"], "positive number"),
    (["sample", "x.pt", "--sampler", "dpm-solver"], "unknown sampler"),
    (["sample", "x.pt", "--eta", "-0.5"], "--eta"),
    (["sample", "x.pt", "--out", "grid"], "must end in"),
    (["sample", "x.pt", "--device", "tpu9"], "device"),
    (["train", "--preset", "tiny", "--device", "cuda:3"], "device"),
])
def test_bad_options(capsys, tmp_path, argv, needle):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "o")]
    assert needle in _one_line_error(capsys, argv)


def test_sample_output_that_is_a_directory(capsys, tmp_path):
    (tmp_path / "g.png").mkdir()
    assert "directory" in _one_line_error(capsys, ["sample", "x.pt", "--out",
                                                   str(tmp_path / "g.png")])


def test_threshold_on_an_ann_is_refused(capsys, tmp_path):
    from sddpm.train import TrainConfig, Trainer

    Trainer(TrainConfig(preset="tiny", arch="ann", steps=1, sample_every=10, sample_n=2,
                        sample_steps=2, out=str(tmp_path))).run()
    capsys.readouterr()
    err = _one_line_error(capsys, ["sample", str(tmp_path / "last.pt"), "--threshold", "0.99"])
    assert "spiking models only" in err


def test_sample_writes_grid_and_npz_deterministically(tiny_checkpoint, tmp_path):
    args = ["sample", str(tiny_checkpoint), "--n", "5", "--sampler", "ddim", "--steps", "3",
            "--seed", "7"]
    for name in ("a", "b"):
        assert main(args + ["--out", str(tmp_path / f"{name}.png"),
                            "--npz", str(tmp_path / f"{name}.npz")]) == 0
    a, b = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert a.shape == (5, 8, 8, 1) and a.dtype == np.uint8 and (a == b).all()
    assert (tmp_path / "a.png").stat().st_size > 0
    main(args + ["--threshold", "0.9", "--out", str(tmp_path / "c.png"),
                 "--npz", str(tmp_path / "c.npz")])
    assert not (np.load(tmp_path / "c.npz")["images"] == a).all()


def test_console_script_errors_are_one_line(tmp_path):
    result = run_cli("sddpm", "sample", tmp_path / "missing.pt")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = run_cli("sddpm", "train", "--timesteps", "0")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
