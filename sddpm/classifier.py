"""A Fashion-MNIST classifier whose features measure sample quality offline.

Inception-v3 weights cannot be downloaded here, and ImageNet features say little about
28x28 garments. FID and KID in the feature space of a classifier trained on the data
set itself (the penultimate layer, 128 numbers) are the offline measure: comparable
between our models, not with published Inception FIDs.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from sddpm.checkpoint import check_against_model, load_checkpoint, save_checkpoint
from sddpm.data import load_dataset, load_labels
from sddpm.errors import SddpmError

FEATURES = 128
FORMAT_ARCH = "fmnist-classifier"


class FashionClassifier(nn.Module):
    """``[B, 1, 32, 32]`` images in [-1, 1] -> 10 logits; :meth:`features` -> ``[B, 128]``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@torch.no_grad()
def accuracy(model: FashionClassifier, images, labels: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch):
        idx = np.arange(start, min(start + batch, len(labels)))
        correct += int((model(images.batch(idx)).argmax(1).numpy() == labels[idx]).sum())
    return correct / len(labels)


def train_classifier(out, *, epochs: int = 3, batch: int = 128, seed: int = 0,
                     data_dir=None, progress: bool = True) -> dict:
    """Train on the 60,000 training images; report test accuracy on the 10,000 others."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = load_dataset("fmnist", image_size=32, data_dir=data_dir, split="train")
    labels = load_labels("fmnist", data_dir=data_dir, split="train")
    test = load_dataset("fmnist", image_size=32, data_dir=data_dir, split="test")
    test_labels = load_labels("fmnist", data_dir=data_dir, split="test")
    model = FashionClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * (len(labels) // batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    t0 = time.perf_counter()
    with tqdm(total=steps, desc="train classifier", disable=not progress) as bar:
        for _ in range(epochs):
            order = rng.permutation(len(labels))
            model.train()
            for start in range(0, len(order) - batch + 1, batch):
                idx = order[start:start + batch]
                x = train.batch(idx)
                x = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, x, x.flip(3))
                loss = nn.functional.cross_entropy(model(x), torch.from_numpy(labels[idx]).long())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    test_accuracy = accuracy(model, test, test_labels)
    info = {"epochs": epochs, "batch": batch, "seed": seed, "test_accuracy": test_accuracy,
            "seconds": round(time.perf_counter() - t0, 1)}
    save_checkpoint({"arch": FORMAT_ARCH, "model_config": {}, "step": steps,
                     "model": model.state_dict(), "info": info}, out)
    return info


def load_classifier(path) -> tuple[FashionClassifier, dict]:
    payload = load_checkpoint(path, verify=False)
    if payload.get("arch") != FORMAT_ARCH:
        raise SddpmError(f"{path} is not a Fashion-MNIST classifier written by sddpm")
    model = FashionClassifier()
    check_against_model(payload, model.state_dict(), path, "classifier")
    model.load_state_dict(payload["model"])
    return model.eval(), payload.get("info", {})
