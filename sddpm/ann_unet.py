"""The ANN twin: the DDPM U-Net of Ho et al. built from the same preset.

GroupNorm + Swish + dropout residual blocks with the time embedding added after the
first convolution, stride-2 conv downsampling, nearest-upsample + conv upsampling,
channel-concatenated skips, and self-attention in the first middle block.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sddpm.presets import ModelConfig
from sddpm.time_embedding import TimeEmbedding
from sddpm.unet_layout import BlockSpec, run_unet, unet_layout


def _group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in DDPM; small presets fall back to the largest divisor
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _group_norm(ch)
        self.proj_q = nn.Conv2d(ch, ch, 1)
        self.proj_k = nn.Conv2d(ch, ch, 1)
        self.proj_v = nn.Conv2d(ch, ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        q = self.proj_q(h).flatten(2).transpose(1, 2)  # [B, HW, C]
        k = self.proj_k(h).flatten(2)  # [B, C, HW]
        v = self.proj_v(h).flatten(2).transpose(1, 2)  # [B, HW, C]
        weights = torch.softmax(torch.bmm(q, k) / math.sqrt(c), dim=-1)
        h = torch.bmm(weights, v).transpose(1, 2).reshape(b, c, height, width)
        return x + self.proj(h)


class ResBlock(nn.Module):
    def __init__(self, *, in_ch: int, out_ch: int, tdim: int, dropout: float, attn: bool):
        super().__init__()
        self.block1 = nn.Sequential(_group_norm(in_ch), nn.SiLU(), _conv3x3(in_ch, out_ch))
        self.temb_proj = nn.Sequential(nn.SiLU(), nn.Linear(tdim, out_ch))
        self.block2 = nn.Sequential(
            _group_norm(out_ch), nn.SiLU(), nn.Dropout(dropout), _conv3x3(out_ch, out_ch)
        )
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = AttnBlock(out_ch) if attn else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.temb_proj(temb)[:, :, None, None]
        h = self.block2(h)
        return self.attn(h + self.shortcut(x))


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = _conv3x3(ch, ch, stride=2)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = _conv3x3(ch, ch)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x))


class AnnUNet(nn.Module):
    """Noise predictor ``eps(x_t [B, img, H, W], t [B]) -> [B, img, H, W]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ch, tdim, p = config.ch, 4 * config.ch, config.dropout
        self.time_embedding = TimeEmbedding(num_steps=config.diffusion_steps, ch=ch, tdim=tdim)
        self.head = _conv3x3(config.image_channels, ch)
        down, up, middle = unet_layout(config)
        self.up_specs = up

        def block(spec, attn=False):
            if spec.kind == "res":
                return ResBlock(in_ch=spec.in_ch, out_ch=spec.out_ch, tdim=tdim, dropout=p,
                                attn=attn)
            return Downsample(spec.in_ch) if spec.kind == "down" else Upsample(spec.in_ch)

        self.down = nn.ModuleList(block(spec) for spec in down)
        self.middle = nn.ModuleList([
            block(BlockSpec("res", middle, middle), attn=config.attn_middle),
            block(BlockSpec("res", middle, middle)),
        ])
        self.up = nn.ModuleList(block(spec) for spec in up)
        now = up[-1].out_ch
        self.tail = nn.Sequential(
            _group_norm(now), nn.SiLU(), _conv3x3(now, config.image_channels)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_embedding(t)
        h = self.head(x)
        h = run_unet(h, temb, self.down, self.middle, self.up, self.up_specs)
        return self.tail(h)
