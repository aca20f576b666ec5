"""BatchNorm statistics measured for the weights they normalise (sddpm.batch_norm)."""

import copy
import warnings

import numpy as np
import pytest
import torch

from sddpm.batch_norm import (
    RECALIBRATION_KEY,
    Recalibration,
    _NoisedAtRandomSteps,
    recalibrate_batch_norm,
    recalibration_stream,
    stale_batch_norm,
)
from sddpm.checkpoint import load_checkpoint, save_checkpoint
from sddpm.data import load_dataset
from sddpm.diffusion import GaussianDiffusion
from sddpm.models import build_model
from sddpm.presets import get_preset
from sddpm.sampling import model_from_checkpoint
from tests.conftest import run_cli

TINY = get_preset("tiny")


def _tiny(arch="snn"):
    torch.manual_seed(0)
    return build_model(TINY, arch), GaussianDiffusion(TINY.diffusion_steps), \
        load_dataset(TINY.dataset, image_size=TINY.image_size)


def _garbage_statistics(net):
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(100.0)


def test_recalibrated_statistics_normalise_the_images_they_were_measured_on():
    net, diffusion, data = _tiny()
    _garbage_statistics(net)
    how = Recalibration(images=64, batch=16, seed=3)
    recalibrate_batch_norm(net, diffusion, data, how)
    assert not net.training
    # the same draws again, now in eval mode: the first BatchNorm sees the same inputs as
    # during the measurement (nothing normalised before it), so with statistics that are
    # the plain mean over the batches its output averages to its bias, channel by channel
    seen = []
    hook = net.encoder.bn1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    generator = torch.Generator().manual_seed(recalibration_stream(how.seed))
    chosen = torch.randperm(len(data), generator=generator)[:how.images].numpy()
    noised = _NoisedAtRandomSteps(net, diffusion, generator)
    with torch.no_grad():
        for i in range(0, len(chosen), how.batch):
            noised(data.batch(chosen[i:i + how.batch]))
    hook.remove()
    out = torch.cat(seen)
    mean = out.mean(dim=(0, 2, 3))
    assert torch.allclose(mean, net.encoder.bn1.bias.detach(), atol=1e-4)
    std = out.std(dim=(0, 2, 3))
    gamma = net.encoder.bn1.weight.detach().abs()
    assert torch.allclose(std, gamma, rtol=0.1)


def test_recalibration_changes_no_weight_and_leaves_the_global_rng_alone():
    net, diffusion, data = _tiny()
    before = copy.deepcopy(net.state_dict())
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    record = recalibrate_batch_norm(net, diffusion, data, Recalibration(images=10_000, batch=64))
    assert record.images == len(data)  # capped at the data set
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k
               and "num_batches" not in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if "running_mean" in k)


def test_any_training_seed_gives_a_valid_recalibration_stream():
    from sddpm.train import step_seed

    for seed in (0, 2 ** 40, 2 ** 62 - 1):
        torch.Generator().manual_seed(recalibration_stream(step_seed(seed, 19_000, 0)))


def test_a_network_without_batch_norm_is_left_as_it_is():
    net, diffusion, data = _tiny("ann")
    before = copy.deepcopy(net.state_dict())
    assert recalibrate_batch_norm(net, diffusion, data) is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_training_writes_the_ema_with_statistics_measured_for_it(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint)
    assert {k: ck[RECALIBRATION_KEY][k] for k in ("images", "batch")} == {"images": 512,
                                                                          "batch": 32}
    net, diffusion, data = _tiny()
    net.load_state_dict(ck["ema"])
    _garbage_statistics(net)
    recalibrate_batch_norm(net, diffusion, data, Recalibration(**ck[RECALIBRATION_KEY]))
    for k, v in net.state_dict().items():
        assert torch.equal(v, ck["ema"][k]), k
    # the raw model keeps the statistics it trained with: the EMA's are not a copy of them
    assert not torch.equal(ck["ema"]["encoder.bn1.running_var"],
                           ck["model"]["encoder.bn1.running_var"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_from_checkpoint(tiny_checkpoint)


def _stale_copy(tiny_checkpoint, path):
    ck = load_checkpoint(tiny_checkpoint)
    ck[RECALIBRATION_KEY] = None
    ck["ema"] = {**ck["ema"], **{k: v for k, v in ck["model"].items() if "running" in k}}
    return save_checkpoint(ck, path)


def test_an_ema_checkpoint_from_before_the_fix_warns_and_recalibrate_repairs_it(
        tiny_checkpoint, tmp_path):
    stale = _stale_copy(tiny_checkpoint, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="sddpm recalibrate"):
        model_from_checkpoint(stale)
    model_from_checkpoint(stale, use_ema=False)  # the raw weights have their own statistics
    before = stale.read_bytes()
    done = run_cli("sddpm", "recalibrate", stale, "-o", tmp_path / "new.pt", "--seed", "7")
    assert done.returncode == 0, done.stderr
    assert "512 training images" in done.stdout
    assert stale.read_bytes() == before
    new = load_checkpoint(tmp_path / "new.pt")
    assert new[RECALIBRATION_KEY] == {"images": 512, "batch": 32, "seed": 7}
    assert not stale_batch_norm(new, build_model(TINY, "snn"))
    old = load_checkpoint(stale)
    assert all(torch.equal(old["ema"][k], new["ema"][k]) for k in old["ema"] if "running" not in k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_from_checkpoint(tmp_path / "new.pt")


def test_shipping_an_old_ema_checkpoint_recalibrates_it(tiny_checkpoint, tmp_path):
    from scripts.ship_checkpoint import main as ship

    ship(str(_stale_copy(tiny_checkpoint, tmp_path / "old.pt")), str(tmp_path / "ship.pt"))
    shipped = load_checkpoint(tmp_path / "ship.pt")
    assert shipped["ema"] is None and shipped["shipped_from_ema"]
    assert shipped[RECALIBRATION_KEY]["images"] == 512
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_from_checkpoint(tmp_path / "ship.pt")


def test_recalibrate_refuses_to_overwrite_its_input(tiny_checkpoint):
    done = run_cli("sddpm", "recalibrate", tiny_checkpoint, "-o", tiny_checkpoint)
    assert done.returncode != 0 and "names the input file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_recalibrate_refuses_a_network_without_batch_norm(tmp_path):
    from sddpm.train import TrainConfig, Trainer

    Trainer(TrainConfig(preset="tiny", arch="ann", steps=1, sample_every=100, sample_n=2,
                        sample_steps=2, out=str(tmp_path))).run()
    done = run_cli("sddpm", "recalibrate", tmp_path / "last.pt", "-o", tmp_path / "x.pt")
    assert done.returncode != 0 and "without BatchNorm" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
