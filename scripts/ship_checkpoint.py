"""Write an inference-only copy of a training checkpoint (for checkpoints/).

The EMA weights (or the raw ones when the run had no EMA) become ``model``; the
optimizer state is dropped, which shrinks the file to the weights alone. The result
samples and exports like any checkpoint, but cannot be resumed.

    python scripts/ship_checkpoint.py runs/x/last.pt checkpoints/name.pt
"""

import sys

from sddpm.checkpoint import load_checkpoint, save_checkpoint


def main(src: str, dst: str) -> None:
    ck = load_checkpoint(src)
    weights = ck["ema"] if ck.get("ema") is not None else ck["model"]
    shipped = {k: v for k, v in ck.items() if k not in ("format", "version")}
    shipped.update(model=weights, ema=None, optimizer=None, shipped_from_ema=ck.get("ema") is not None)
    save_checkpoint(shipped, dst)
    print(f"wrote {dst} (step {ck['step']}, {'EMA' if shipped['shipped_from_ema'] else 'raw'} weights)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/ship_checkpoint.py SRC.pt DST.pt")
    main(*sys.argv[1:])
