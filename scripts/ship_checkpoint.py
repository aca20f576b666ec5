"""Write an inference-only copy of a training checkpoint (for checkpoints/).

The EMA weights (or the raw ones when the run had no EMA) become ``model``; the
optimizer state is dropped, which shrinks the file to the weights alone. EMA weights
whose BatchNorm statistics were not measured for them (a file written before training
did so) are recalibrated first (:mod:`sddpm.batch_norm`). The result samples and
exports like any checkpoint, but cannot be resumed.

    python scripts/ship_checkpoint.py runs/x/last.pt checkpoints/name.pt
"""

import sys

from sddpm.batch_norm import RECALIBRATION_KEY, stale_batch_norm, weights_from_ema
from sddpm.checkpoint import load_checkpoint, save_checkpoint
from sddpm.models import build_model
from sddpm.presets import ModelConfig
from sddpm.recalibration import recalibrate_checkpoint


def main(src: str, dst: str) -> None:
    ck = load_checkpoint(src)
    net = build_model(ModelConfig.from_dict(ck["model_config"]), ck["arch"])
    if stale_batch_norm(ck, net):
        ck = recalibrate_checkpoint(ck, src)
    from_ema = weights_from_ema(ck)
    weights = ck["ema"] if ck.get("ema") is not None else ck["model"]
    shipped = {k: v for k, v in ck.items() if k not in ("format", "version")}
    shipped.update(model=weights, ema=None, optimizer=None, shipped_from_ema=from_ema)
    save_checkpoint(shipped, dst)
    bn = ck.get(RECALIBRATION_KEY)
    print(f"wrote {dst} (step {ck['step']}, {'EMA' if from_ema else 'raw'} weights"
          + (f", BatchNorm statistics measured on {bn['images']} training images" if bn else "")
          + ")")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/ship_checkpoint.py SRC.pt DST.pt")
    main(*sys.argv[1:])
