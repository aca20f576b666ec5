import csv
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from sddpm.checkpoint import load_checkpoint
from sddpm.errors import SddpmError
from sddpm.train import BatchOrder, TrainConfig, Trainer
from tests.conftest import BIN, ROOT


def _losses(out):
    with open(out / "losses.csv") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def _train_args(out, steps, *extra):
    return [str(BIN / "sddpm"), "train", "--preset", "tiny", "--steps", str(steps),
            "--ckpt-every", "10", "--sample-every", "100000", "--out", str(out), *extra]


@pytest.mark.slow
def test_kill_9_then_resume_reproduces_the_uninterrupted_losses(tmp_path):
    steps = 60
    reference, victim = tmp_path / "ref", tmp_path / "victim"
    subprocess.run(_train_args(reference, steps), check=True, capture_output=True, cwd=ROOT)
    proc = subprocess.Popen(_train_args(victim, steps), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (victim / "last.pt").exists() and len(_losses(victim)) >= 25:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(victim / "last.pt")["step"]
    assert 10 <= killed_at < steps, "the kill came too late to test anything"
    subprocess.run(_train_args(victim, steps, "--resume"), check=True, capture_output=True,
                   cwd=ROOT)
    assert _losses(victim) == _losses(reference)
    assert len(_losses(reference)) == steps
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(victim / "last.pt")
    # the EMA too, BatchNorm statistics included: the recalibrated copy written at each
    # checkpoint must not leak into the running average the resumed run continues
    for section in ("model", "ema"):
        assert all(torch.equal(a[section][k], b[section][k]) for k in a[section]), section


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(preset="tiny", steps=20, ckpt_every=4, sample_every=1000, sample_n=2,
                      sample_steps=2, out=str(tmp_path))
    trainer = Trainer(cfg)
    real_loss = trainer.diffusion.loss
    calls = {"n": 0}

    def poisoned(model, x0, generator=None):
        calls["n"] += 1
        loss = real_loss(model, x0, generator)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(trainer.diffusion, "loss", poisoned)
    with pytest.raises(SddpmError, match="non-finite at step 7"):
        trainer.run()
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_ema_update_is_the_exponential_average():
    from sddpm.train import _ema_update

    ema, model = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        ema.weight.fill_(1.0)
        model.weight.fill_(3.0)
        model.running_mean.fill_(5.0)
    _ema_update(ema, model, 0.75)
    assert torch.allclose(ema.weight, torch.full((3,), 1.5))  # .75 * 1 + .25 * 3
    assert torch.equal(ema.running_mean, model.running_mean)  # buffers are copied


def test_ema_is_saved_and_lags_the_weights(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint)
    assert ck["ema"] is not None and ck["step"] == 6
    diff = [k for k in ck["model"] if not torch.equal(ck["model"][k], ck["ema"][k])]
    assert diff, "EMA weights should lag the trained weights"


def test_resume_takes_the_trajectory_options_of_the_run(tmp_path):
    Trainer(TrainConfig(preset="tiny", steps=2, lr=5e-4, batch_size=8, sample_every=100,
                        sample_n=2, sample_steps=2, out=str(tmp_path))).run()
    resumed = Trainer(TrainConfig(preset="tiny", steps=4, out=str(tmp_path)), resume=True)
    assert (resumed.lr, resumed.batch_size, resumed.step) == (5e-4, 8, 2)
    with pytest.raises(SddpmError, match="lr=0.0005"):
        Trainer(TrainConfig(preset="tiny", steps=4, lr=1e-3, out=str(tmp_path)), resume=True)


def test_inference_only_checkpoints_cannot_be_resumed(tiny_checkpoint, tmp_path):
    from scripts.ship_checkpoint import main as ship

    (tmp_path / "run").mkdir()
    ship(str(tiny_checkpoint), str(tmp_path / "run" / "last.pt"))
    with pytest.raises(SddpmError, match="inference-only"):
        Trainer(TrainConfig(preset="tiny", steps=8, out=str(tmp_path / "run")), resume=True)
    with pytest.raises(SddpmError, match="no checkpoint"):
        Trainer(TrainConfig(preset="tiny", steps=8, out=str(tmp_path / "none")), resume=True)


def test_existing_run_needs_resume(tiny_checkpoint):
    cfg = TrainConfig(preset="tiny", steps=8, out=str(tiny_checkpoint.parent))
    with pytest.raises(SddpmError, match="--resume"):
        Trainer(cfg)
    with pytest.raises(SddpmError, match="timesteps"):
        Trainer(TrainConfig(preset="tiny", steps=8, timesteps=8,
                            out=str(tiny_checkpoint.parent)), resume=True)


def test_batch_order_visits_every_image_once_per_epoch():
    order = BatchOrder(10, seed=3)
    first = order.indices(0, 10)
    assert sorted(first) == list(range(10))
    second = order.indices(10, 10)
    assert sorted(second) == list(range(10)) and list(first) != list(second)
    assert list(BatchOrder(10, seed=3).indices(7, 6)) == list(first[7:]) + list(second[:3])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "sddpm.cli", "train", "--preset", "tiny", "--steps", "6", "--ckpt-every",
           "3", "--sample-every", "100000", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 6 and len(_losses(out)) == 6


def test_standard_block_trains_resumes_and_is_refused_where_it_does_not_apply(tmp_path):
    from sddpm.sampling import model_from_checkpoint
    from sddpm.snn_unet import PreSpikeResBlock, StandardSpikingResBlock

    cfg = TrainConfig(preset="tiny", block="standard", steps=2, ckpt_every=2, warmup=1,
                      sample_every=1000, out=str(tmp_path / "std"))
    Trainer(cfg).run()
    model, payload = model_from_checkpoint(tmp_path / "std" / "last.pt")
    assert payload["model_config"]["block"] == "standard"
    kinds = {type(m) for m in model.modules()}
    assert StandardSpikingResBlock in kinds and PreSpikeResBlock not in kinds
    # resuming takes the block from the run
    resumed = Trainer(TrainConfig(preset="tiny", steps=3, out=cfg.out, warmup=1,
                                  sample_every=1000), resume=True)
    assert resumed.cfg.block == "standard"
    assert isinstance(resumed.model.down[0], StandardSpikingResBlock)
    for bad, message in [(dict(block="sew"), "--block 'sew'"),
                         (dict(block="standard", arch="ann"), "ANN twin has one block")]:
        with pytest.raises(SddpmError, match=message):
            TrainConfig(preset="tiny", **bad).validate()


def test_training_in_stages_keeps_each_stage_and_follows_the_straight_run(tmp_path):
    options = ["--preset", "tiny", "--ckpt-every", "1", "--sample-every", "100000",
               "--warmup", "1"]
    env = {**os.environ, "SDDPM": str(BIN / "sddpm"), "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "scripts" / "train_in_stages.sh")
    staged = subprocess.run([script, str(tmp_path / "staged"), "2", "4", "--", *options],
                            capture_output=True, text=True, timeout=300, env=env)
    assert staged.returncode == 0, staged.stderr[-2000:]
    assert [load_checkpoint(tmp_path / "staged" / f"snap-{s}.pt")["step"] for s in (2, 4)] \
        == [2, 4]
    straight = subprocess.run([str(BIN / "sddpm"), "train", *options, "--steps", "4",
                               "--out", str(tmp_path / "straight")],
                              capture_output=True, text=True, timeout=300, env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert _losses(tmp_path / "staged") == _losses(tmp_path / "straight")
    # a stage already kept is not trained again
    again = subprocess.run([script, str(tmp_path / "staged"), "2", "4", "--", *options],
                           capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "train" not in again.stdout
    # a stage the run has gone past is said to be missing, not kept under a later state
    past = subprocess.run([script, str(tmp_path / "staged"), "3", "--", *options],
                          capture_output=True, text=True, timeout=300, env=env)
    assert past.returncode == 0 and "already at step 4" in past.stdout
    assert not (tmp_path / "staged" / "snap-3.pt").exists()
    with pytest.raises(SddpmError, match="past --steps 3"):
        Trainer(TrainConfig(preset="tiny", steps=3, out=str(tmp_path / "staged")), resume=True)
    bad = subprocess.run([script, str(tmp_path / "x"), "2", "--preset", "tiny"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "whole number" in bad.stderr


def _write_losses(path, losses, seconds=0.5, tail=""):
    with open(path, "w") as f:
        f.write("step,loss,grad_norm,seconds\n")
        f.writelines(f"{i + 1},{v},1.0,{seconds}\n" for i, v in enumerate(losses))
        f.write(tail)


def test_training_figures_pair_runs_at_equal_steps_and_refuse_broken_logs(tmp_path):
    # run a is ahead of b: the table stops at the windows both have completed; a's last
    # 100 steps are half 0.2, half 0.1
    _write_losses(tmp_path / "a.csv", [0.8] * 100 + [0.4] * 100 + [0.2] * 100 + [0.1] * 50,
                  seconds=36.0)
    _write_losses(tmp_path / "b.csv", [0.6] * 100 + [0.3] * 150, seconds=2.16,
                  tail="251,0.2")  # the half row a kill leaves
    script = str(ROOT / "scripts" / "plot_training.py")
    png = tmp_path / "curve.png"
    done = subprocess.run([sys.executable, script, f"a={tmp_path / 'a.csv'}",
                           f"b={tmp_path / 'b.csv'}", "--every", "100", "--out", str(png)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("a: 350 steps, 3.50 h summed") and "0.15000 over steps 251-350" in lines[0]
    assert lines[1].startswith("b: 250 steps, 0.15 h summed") and "0.30000 over steps 151-250" in lines[1]
    assert "| 1-100 | 0.80000 | 0.60000 |" in lines and "| 101-200 | 0.40000 | 0.30000 |" in lines
    assert not any(line.startswith("| 201-300") for line in lines)
    assert png.stat().st_size > 10_000
    _write_losses(tmp_path / "gap.csv", [0.5] * 3)
    (tmp_path / "gap.csv").write_text((tmp_path / "gap.csv").read_text().replace("\n2,", "\n7,"))
    for bad, words in ((tmp_path / "gap.csv", "step 7 where 2 was expected"),
                       (ROOT / "README.md", "expected step,loss,grad_norm,seconds"),
                       (tmp_path / "none.csv", "does not exist")):
        refused = subprocess.run([sys.executable, script, f"x={bad}", "--window", "1",
                                  "--out", str(tmp_path / "x.png")],
                                 capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
