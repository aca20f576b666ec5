"""Offline sample quality: the classifier, its features, FID and KID."""

import json

import numpy as np
import pytest
import torch

from sddpm.classifier import FashionClassifier, load_classifier
from sddpm.data import DEBIAN_FASHION_MNIST, load_labels
from sddpm.errors import SddpmError
from sddpm.evaluation import classifier_features, fid_kid
from tests.conftest import ROOT, run_cli

CLASSIFIER = ROOT / "checkpoints" / "fmnist-classifier.pt"
HAVE_FMNIST = (DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists()


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(2000, 16)))
    b = torch.from_numpy(rng.normal(size=(2000, 16)))
    same = fid_kid(a, a)
    assert abs(same["fid"]) < 1e-6
    near, far = fid_kid(a, b)["fid"], fid_kid(a, b + 1.0)["fid"]
    assert near < 0.1 and far == pytest.approx(16 + near, rel=0.05)  # |mean shift|^2 = 16
    assert fid_kid(a, b + 1.0)["kid_mean"] > fid_kid(a, b)["kid_mean"]


def test_unknown_metric_and_too_few_images_are_refused():
    a = torch.zeros(10, 4, dtype=torch.float64)
    with pytest.raises(SddpmError, match="unknown metric 'is'"):
        fid_kid(a, a, metrics=["is"])
    with pytest.raises(SddpmError, match="at least 2 images"):
        fid_kid(a[:1], a, metrics=["fid"])


def test_features_are_the_penultimate_layer():
    model = FashionClassifier().eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    feats = classifier_features(model, x)
    assert feats.shape == (3, 128) and feats.dtype == torch.float64
    torch.testing.assert_close(model.head(feats.float()), model(x))


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST is not installed")
def test_labels_align_with_the_images():
    labels = load_labels("fmnist", split="test")
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_shipped_classifier_accuracy_is_what_it_says():
    from sddpm.classifier import accuracy
    from sddpm.data import load_dataset

    model, info = load_classifier(CLASSIFIER)
    test = load_dataset("fmnist", image_size=32, split="test")
    measured = accuracy(model, test, load_labels("fmnist", split="test"))
    assert measured == pytest.approx(info["test_accuracy"], abs=1e-9) and measured > 0.88


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_eval_cli_reports_fid_and_kid(tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli("sddpm", "eval", ROOT / "checkpoints" / "fmnist-small-snn.pt", "--n", "64",
                     "--steps", "5", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fid"] > 0 and report["kid_subset_size"] == 64
    assert report["comparable_to_papers"] is False and json.loads(out.read_text()) == report


def test_eval_refuses_bad_input_in_one_line(tiny_checkpoint, tmp_path):
    for args, message in [((tiny_checkpoint, "--classifier", tmp_path / "none.pt"),
                           "no classifier at"),
                          ((tiny_checkpoint, "--metric", "is"), "unknown metric 'is'")]:
        result = run_cli("sddpm", "eval", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_threshold_sweep_writes_its_table_and_plot(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "sweep"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sweep_threshold.py"),
                    "--thresholds", "0.99", "1.0", "--n", "12", "--steps", "2",
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True)
    rows = json.loads((out / "threshold_sweep.json").read_text())
    assert [r["threshold"] for r in rows] == [0.99, 1.0]
    assert (out / "threshold_sweep.png").stat().st_size > 0
    assert len((out / "threshold_sweep.csv").read_text().splitlines()) == 3
