"""Sinusoidal diffusion-step embedding followed by a two-layer MLP (Ho et al.)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_steps: int, dim: int) -> torch.Tensor:
    """The ``[num_steps, dim]`` table of sin/cos features of the diffusion step."""
    if dim % 2:
        raise ValueError(f"time-embedding width must be even, got {dim}")
    freqs = torch.exp(-math.log(10000) * torch.arange(0, dim, 2).float() / dim)
    angles = torch.arange(num_steps).float()[:, None] * freqs[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(num_steps, dim)


class TimeEmbedding(nn.Module):
    """``t [B] -> temb [B, tdim]``; the frozen table counts as parameters, as in the papers."""

    def __init__(self, *, num_steps: int, ch: int, tdim: int):
        super().__init__()
        self.table = nn.Embedding.from_pretrained(sinusoidal_table(num_steps, ch), freeze=True)
        self.mlp = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.table(t))
