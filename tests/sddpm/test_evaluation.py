"""Offline sample quality: the classifier, its features, FID and KID."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sddpm.classifier import FashionClassifier, load_classifier
from sddpm.data import DEBIAN_FASHION_MNIST, load_labels
from sddpm.errors import SddpmError
from sddpm.evaluation import classifier_features
from sddpm.fid_kid import fid_kid
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


def test_precision_and_recall_tell_collapse_from_blur():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 8, generator=g, dtype=torch.float64)
    fresh = torch.randn(500, 8, generator=g, dtype=torch.float64)
    # 'sharp but collapsed': real-looking samples from one small corner of the data
    collapsed = real[:500] * 0.15
    # 'blurry but diverse': the whole distribution, spread wider than the data
    blurred = torch.randn(500, 8, generator=g, dtype=torch.float64) * 2.0
    same, sharp, blurry = (fid_kid(x, real, metrics=["prc"]) for x in (fresh, collapsed, blurred))
    assert same["precision"] > 0.6 and same["recall"] > 0.6 and same["prc_real_images"] == 500
    assert sharp["precision"] > 0.8 and sharp["recall"] < 0.1
    assert blurry["recall"] > 0.6 > 0.3 > blurry["precision"]
    with pytest.raises(SddpmError, match="more than 3 generated"):
        fid_kid(fresh[:3], real, metrics=["prc"])


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
                          ((tiny_checkpoint, "--metric", "ssim"), "unknown metric 'ssim'")]:
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


class _ScriptedPayload(torch.nn.Module):
    """A TorchScript module whose loading runs code (``__setstate__``)."""

    def __init__(self):
        super().__init__()
        self.x = 1

    @torch.jit.export
    def __getstate__(self):
        return (self.x, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]):
        print("payload ran")
        self.x = state[0]
        self.training = state[1]


class _RunsCodeWhenUnpickled:
    """A payload a hostile weights file could carry: unpickling it writes a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A state dict with torch-fidelity's InceptionV3 layout and random values.

    The real weights come from GitHub, which tests cannot reach; the layout is what the
    loading, feature and metric path depends on.
    """
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict",
                              lambda self, state: None):
        model = fe.FeatureExtractorInceptionV3("random", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(model.state_dict(), path)
    return path


def test_images_become_uint8_rgb_for_inception():
    from sddpm.inception import to_uint8_rgb

    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, 2].flatten().tolist() == [0, 128, 255, 255]


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST is not installed")
def test_eval_with_local_inception_weights_reports_fid_kid_and_is(random_inception_weights,
                                                                  tmp_path):
    args = ("sddpm", "eval", ROOT / "checkpoints" / "fmnist-small-snn.pt", "--n", "6",
            "--steps", "1", "--metric", "fid", "kid", "is", "--inception-weights",
            random_inception_weights, "--real-n", "8", "--json")
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fid"] > 0 and report["kid_subset_size"] == 6 and report["real_images"] == 8
    assert np.isfinite(report["is_mean"]) and report["is_splits"] == 1
    assert report["official_weights"] is False and report["comparable_to_papers"] is False
    cached = list((tmp_path / "sddpm").glob("inception-*-fmnist-test-8.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (8, 2048)
    # the second run reads the cache: shifted cached features move the FID
    real = np.load(cached[0])
    np.save(cached[0], real + 1.0)
    shifted = json.loads(run_cli(*args, env=env).stdout)
    assert shifted["fid"] > report["fid"] + 1.0
    cached[0].write_bytes(b"damaged")  # a damaged cache is computed again
    again = json.loads(run_cli(*args, env=env).stdout)
    assert again["fid"] == pytest.approx(report["fid"], rel=1e-9)
    np.testing.assert_array_equal(np.load(cached[0]), real)


def test_inception_weights_are_loaded_without_running_pickled_code(tmp_path, tiny_checkpoint):
    marker = tmp_path / "ran.txt"
    hostile = tmp_path / "hostile.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": _RunsCodeWhenUnpickled(marker)},
               hostile)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3)}, wrong)
    scripted = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(_ScriptedPayload()), scripted)
    for args, message in [
            (("--inception-weights", scripted), "is a TorchScript archive"),
            (("--inception-weights", wrong, "--classifier", CLASSIFIER), "pass one"),
            (("--inception-weights", hostile), "is not a plain tensor file"),
            (("--inception-weights", wrong), "does not fit torch-fidelity's InceptionV3"),
            (("--inception-weights", tmp_path / "none.pth"), "no Inception weights at"),
            (("--inception-weights", wrong, "--metric", "fid", "lpips"),
             "unknown metric 'lpips'"),
            (("--metric", "is"), "needs Inception's logits"),
            (("--real-n", "5"), "--real-n applies to Inception metrics only")]:
        result = run_cli("sddpm", "eval", tiny_checkpoint, *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "payload ran" not in result.stdout
    assert not marker.exists()
    # the same guard protects checkpoints: torch < 2.6 would run a TorchScript archive's
    # code even under weights_only=True
    result = run_cli("sddpm", "eval", scripted, "--n", "2")
    assert result.returncode == 2 and "is a TorchScript archive" in result.stderr
    assert "payload ran" not in result.stdout


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST is not installed")
def test_real_n_beyond_the_test_set_is_refused_before_sampling(random_inception_weights):
    result = run_cli("sddpm", "eval", ROOT / "checkpoints" / "fmnist-small-snn.pt",
                     "--inception-weights", random_inception_weights, "--real-n", "20000",
                     "--n", "100000")  # would take hours if it sampled first
    assert result.returncode == 2 and "the test set has 10000 images" in result.stderr


def test_comparable_to_papers_needs_official_weights_and_paper_scale_sets():
    from sddpm.inception import comparable_to_papers

    cases = {(o, n, r): comparable_to_papers(o, n, r) for o in (True, False)
             for n in (100, 10_000, 50_000) for r in (0, 100, 10_000)}
    assert sorted(k for k, v in cases.items() if v) == [
        (True, 10_000, 0), (True, 10_000, 10_000), (True, 50_000, 0), (True, 50_000, 10_000)]



def _script(name, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_sampler_sweep_writes_rows_with_intervals_and_energy_and_resumes(tmp_path):
    args = ("sweep_samplers.py", "--samplers", "ddim-1", "ddim-3", "heun-2", "--n", "8",
            "--profile-n", "1", "--batch", "4", "--bootstrap", "20", "--out", tmp_path)
    # a second process's share of the rows, last batch first, then the table run
    backwards = _script(*args, "--sample-only", "--reverse")
    assert backwards.returncode == 0, backwards.stderr
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "images").rglob("*.npy")}
    assert len(made) == 6
    for row in (tmp_path / "images").glob("*/*"):  # last batch first
        assert made[row / "seed0-b4-0001.npy"] < made[row / "seed0-b4-0000.npy"]
    first = _script(*args)
    assert first.returncode == 0, first.stderr
    assert {p: p.stat().st_mtime_ns for p in made} == made  # nothing sampled twice
    rows = json.loads((tmp_path / "samplers.json").read_text())
    assert [r["label"] for r in rows] == ["ddim-1", "ddim-3", "heun-2"]
    assert [r["network_calls"] for r in rows] == [1, 3, 3]  # Heun's extra call counted
    # three denoising calls cost about three times one (the spike rates differ a little)
    ratio = rows[1]["energy_paper_mJ_per_image"] / rows[0]["energy_paper_mJ_per_image"]
    assert 2.0 < ratio < 4.5 and all(r["energy_strict_mJ_per_image"] > 0 for r in rows)
    assert all(r["fid_ci_low"] < r["fid"] < r["fid_ci_high"] for r in rows)
    assert (tmp_path / "samplers.png").stat().st_size > 0
    # paired differences need a DDPM-1000 row, which this quick sweep has not
    assert all("fid_diff_vs_ddpm" not in r for r in rows)
    table = (tmp_path / "samplers.md").read_text()
    assert table.count("| SNN |") == 3 and "ddim-3 | 3 |" in table
    images = sorted((tmp_path / "images").rglob("*.npy"))
    assert len(images) == 6  # two batches of 4 per row
    stamps = [p.stat().st_mtime_ns for p in images]
    again = _script(*args)
    assert again.returncode == 0, again.stderr
    assert [p.stat().st_mtime_ns for p in images] == stamps  # nothing sampled again
    assert json.loads((tmp_path / "samplers.json").read_text()) == rows
    bad = _script("sweep_samplers.py", "--samplers", "dpm-10", "--out", tmp_path)
    assert bad.returncode == 2 and "SAMPLER-STEPS" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_timestep_sweep_trains_each_t_with_the_same_budget(tmp_path):
    result = _script("sweep_timesteps.py", "--timesteps", "1", "2", "--train-steps", "2",
                     "--ckpt-every", "1", "--n", "8", "--sampler-steps", "1",
                     "--profile-n", "1", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "timesteps.json").read_text())
    assert [(r["timesteps"], r["trained_steps"]) for r in rows] == [(1, 2), (2, 2)]
    from sddpm.checkpoint import load_checkpoint

    for t in (1, 2):
        payload = load_checkpoint(tmp_path / f"T{t}" / "last.pt")
        assert payload["model_config"]["timesteps"] == t and payload["step"] == 2
    assert rows[1]["energy_paper_mJ_per_image"] > rows[0]["energy_paper_mJ_per_image"]
    assert (tmp_path / "timesteps.png").stat().st_size > 0


def test_recipe_sweep_pairs_the_losses_of_runs_that_differ_in_one_option(tmp_path):
    args = ("sweep_recipe.py", "--preset", "tiny", "--steps", "6", "--window", "4",
            "--ckpt-every", "3", "--out", tmp_path)
    # two processes' shares of the variants (train only), then the table
    for share in (["base", "lr=1e-2"], ["grad_clip=0.01", "batch_size=8"]):
        part = _script(*args, "--variants", *share, "--no-table")
        assert part.returncode == 0, part.stderr
    table = _script(*args, "--variants", "base", "lr=1e-2", "grad_clip=0.01", "batch_size=8")
    assert table.returncode == 0, table.stderr
    rows = {r["variant"]: r for r in json.loads((tmp_path / "recipe.json").read_text())}
    assert list(rows) == ["base", "lr=1e-2", "grad_clip=0.01", "batch_size=8"]
    from sddpm.checkpoint import load_checkpoint

    payload = load_checkpoint(tmp_path / "lr=1e-2" / "last.pt")
    assert payload["train_config"]["lr"] == 1e-2 and payload["step"] == 6
    # same batches: paired; another batch size: not
    assert rows["lr=1e-2"]["paired"] and not rows["batch_size=8"]["paired"]
    assert rows["batch_size=8"]["images_seen"] == 48
    base = [float(r["loss"]) for r in
            csv.DictReader(open(tmp_path / "base" / "losses.csv"))][-4:]
    fast = [float(r["loss"]) for r in
            csv.DictReader(open(tmp_path / "lr=1e-2" / "losses.csv"))][-4:]
    assert rows["lr=1e-2"]["loss_diff_vs_base"] == pytest.approx(
        sum(f - b for f, b in zip(fast, base)) / 4)
    assert (tmp_path / "recipe.png").stat().st_size > 0
    bad = _script(*args, "--variants", "momentum=0.9")
    assert bad.returncode == 2 and "option=value" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def _paired_feature_sets(seed, scale, jitter, shift):
    """Metrics with bootstrap resamples of three feature sets: a, then b from the same
    'noise' as a (image i of b is image i of a, moved), then c from other noise."""
    from sddpm.fid_kid import bootstrap_intervals

    g = torch.Generator().manual_seed(seed)
    real = torch.randn(3000, 6, generator=g, dtype=torch.float64)
    noise = torch.randn(200, 6, generator=g, dtype=torch.float64)
    a = noise * scale
    b = noise * scale + jitter * torch.randn(200, 6, generator=g, dtype=torch.float64) + shift
    c = torch.randn(200, 6, generator=g, dtype=torch.float64) * scale + shift
    results = []
    for x in (a, b, c):
        r = dict(fid_kid(x, real, metrics=["fid", "kid"]))
        r.update(bootstrap_intervals(x, real, r, resamples=200, keep_resamples=True))
        results.append(r)
    return a, real, results


def test_paired_bootstrap_difference_is_tighter_for_images_from_the_same_noise():
    from sddpm.fid_kid import paired_difference

    a, real, (ra, rb, rc) = _paired_feature_sets(0, 1.1, 0.02, 0.05)
    d = paired_difference(rb, ra)
    assert d["diff"] == pytest.approx(rb["fid"] - ra["fid"])
    assert d["ci_low"] < d["diff"] < d["ci_high"]
    # the paired spread is far below what two independent intervals would suggest
    assert d["boot_std"] < 0.5 * (ra["fid_boot_std"] ** 2 + rb["fid_boot_std"] ** 2) ** 0.5
    # unrelated images (another noise) are not paired: no such shrinkage
    unpaired = paired_difference(rc, ra)
    assert unpaired["boot_std"] > 2 * d["boot_std"]
    with pytest.raises(SddpmError, match="resamples"):
        paired_difference(fid_kid(a, real, metrics=["fid"]), ra)


def test_paired_ratio_turns_over_and_narrows_for_images_from_the_same_noise():
    from sddpm.fid_kid import paired_ratio

    a, real, (ra, rb, rc) = _paired_feature_sets(1, 1.2, 0.05, 0.1)
    q = paired_ratio(rb, ra)
    assert q["ratio"] == pytest.approx(rb["fid"] / ra["fid"])
    assert 0 < q["ci_low"] < q["ratio"] < q["ci_high"]
    # b / a turned over is a / b, interval and all
    back = paired_ratio(ra, rb)
    assert back["ratio"] == pytest.approx(1 / q["ratio"])
    assert back["ci_low"] == pytest.approx(1 / q["ci_high"])
    assert back["ci_high"] == pytest.approx(1 / q["ci_low"])
    # images from other noise do not pair: a wider interval on the log
    assert paired_ratio(rc, ra)["log_boot_std"] > 2 * q["log_boot_std"]
    with pytest.raises(SddpmError, match="KID"):
        paired_ratio(rb, ra, metric="kid")
    with pytest.raises(SddpmError, match="resamples"):
        paired_ratio(fid_kid(a, real, metrics=["fid"]), ra)


@pytest.mark.skipif(not (HAVE_FMNIST and CLASSIFIER.is_file()), reason="needs the data")
def test_model_comparison_pairs_models_on_the_same_noise_and_resamples(tmp_path):
    import shutil

    snn, ann = (ROOT / "checkpoints" / f"fmnist-small-{a}.pt" for a in ("snn", "ann"))
    twin = tmp_path / "twin.pt"
    shutil.copy(snn, twin)
    args = ("compare_models.py", f"snn={snn}", f"ann={ann}", f"again={twin}", "--pairs",
            "snn/ann", "snn/again", "--sampler", "ddim-1", "--n", "8", "--batch", "4",
            "--bootstrap", "20", "--profile-n", "1", "--loss-n", "16", "--out", tmp_path / "cmp")
    result = _script(*args)
    assert result.returncode == 0, result.stderr
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    models = {m["name"]: m for m in table["models"]}
    pairs = {(p["a"], p["b"]): p for p in table["pairs"]}
    from sddpm.checkpoint import load_checkpoint

    trained = load_checkpoint(snn)
    assert models["snn"]["step"] == trained["step"] > 0
    assert models["snn"]["block"] == "prespike"
    # what the checkpoint says of its recipe: 0 in a train config means the preset's value
    assert models["snn"]["lr"] == pytest.approx(trained["train_config"]["lr"] or 1e-3)
    assert models["snn"]["batch_size"] == 32
    assert 0 < models["snn"]["mean_spike_rate"] < 1 and "mean_spike_rate" not in models["ann"]
    assert models["ann"]["block"] is None
    p = pairs["snn", "ann"]
    assert p["fid_ratio"] == pytest.approx(models["snn"]["fid"] / models["ann"]["fid"])
    assert p["fid_ratio_ci"][0] < p["fid_ratio"] < p["fid_ratio_ci"][1]
    assert p["fid_diff"] == pytest.approx(models["snn"]["fid"] - models["ann"]["fid"])
    # the same weights from the same noise: the same images, a ratio of exactly 1
    same = pairs["snn", "again"]
    assert same["fid_ratio"] == 1 and same["fid_ratio_ci"] == [1, 1] and same["fid_diff"] == 0
    assert models["again"]["test_loss"] == models["snn"]["test_loss"] != models["ann"]["test_loss"]
    by_step = {name: dict(m["test_loss_by_step"]) for name, m in models.items()}
    assert list(by_step["snn"]) == [0, 10, 50, 100, 200, 400, 600, 800, 999]
    assert by_step["again"] == by_step["snn"] != by_step["ann"]
    assert "| snn | " in (tmp_path / "cmp" / "compare.md").read_text().split("by diffusion step")[1]
    assert (tmp_path / "cmp" / "grid-ann.png").stat().st_size > 0
    assert "| snn / ann |" in (tmp_path / "cmp" / "compare.md").read_text()
    # new weights at the same path sample anew rather than reuse the old images
    shutil.copy(ann, twin)
    again = _script(*args[:-2], "--out", tmp_path / "cmp", "--pairs", "snn/ann")
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "cmp" / "images").glob("again-*"))) == 2
    bad = _script("compare_models.py", f"snn={snn}", "--pairs", "snn/ann", "--out", tmp_path)
    assert bad.returncode == 2 and "pair 'snn/ann'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_loss_by_noise_level_of_an_identity_network_follows_the_schedule():
    from sddpm.diffusion import GaussianDiffusion
    from sddpm.evaluation import loss_by_noise_level

    diffusion = GaussianDiffusion(1000)
    steps = [0, 100, 300, 500]  # float32 rounding would dominate the tiny errors beyond
    # a network that returns its input on clean-zero images: eps_hat - eps =
    # (sqrt(1 - abar) - 1) eps, so the MSE is (1 - sqrt(1 - abar))^2 times mean(eps^2),
    # the same mean at every step when every step meets the same noise
    losses = loss_by_noise_level(lambda x, t: x, diffusion, torch.zeros(64, 1, 32, 32),
                                 steps, batch=24)
    abar = diffusion.alphas_bar[steps].double()
    scale = np.array([losses[s] for s in steps]) / ((1 - (1 - abar).sqrt()) ** 2).numpy()
    assert scale == pytest.approx(np.full(4, scale[0]), rel=1e-4)
    assert scale[0] == pytest.approx(1.0, abs=0.03)  # E[eps^2] over 65,536 draws
    assert losses[0] > 0.9 and losses[500] < 0.01
    with pytest.raises(SddpmError, match="steps 0 to 999"):
        loss_by_noise_level(lambda x, t: x, diffusion, torch.zeros(1, 1, 4, 4), [1000])


def test_held_out_loss_is_the_same_draw_for_every_model_and_far_below_chance():
    from sddpm.evaluation import held_out_loss

    snn, ann = (ROOT / "checkpoints" / f"fmnist-small-{a}.pt" for a in ("snn", "ann"))
    first = held_out_loss(snn, n=24, batch=16)
    assert held_out_loss(snn, n=24, batch=16) == first
    # a network that predicted no noise at all would score E[eps^2] = 1
    assert 0 < first < 0.25 and 0 < held_out_loss(ann, n=24, batch=16) < 0.25
    with pytest.raises(SddpmError, match="test set has 10000"):
        held_out_loss(snn, n=10001)
