"""Write a random-init checkpoint of a preset (no training): for scale checks of the
export and the Lava simulation at the paper's size, where no trained weights exist here.

    python scripts/random_checkpoint.py cifar10 runs/cifar10-random.pt [--seed 0]
"""
from __future__ import annotations

import argparse

import torch

from sddpm.checkpoint import save_checkpoint
from sddpm.models import build_model
from sddpm.presets import get_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    config = get_preset(args.preset)
    model = build_model(config, "snn").eval()
    state = model.state_dict()
    save_checkpoint({"arch": "snn", "neuron": "snntorch", "model_config": config.to_dict(),
                     "train_config": {"note": f"random init, seed {args.seed}, not trained"},
                     "step": 0, "model": state, "ema": state, "optimizer": {}}, args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.preset}, {params / 1e6:.1f} M parameters, random init")


if __name__ == "__main__":
    main()
