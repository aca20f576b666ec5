"""The block layout shared by the Spiking U-Net and its ANN twin.

Both networks have the same skeleton (Ho et al.): ``num_res_blocks`` residual blocks
per resolution level, a stride-2 downsampling after every level but the last, two
middle blocks, and on the way up ``num_res_blocks + 1`` blocks per level, each reading
the channel concatenation of the stream and one skip, with an upsampling after every
level but the first. Only the blocks differ; this module holds the skeleton.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sddpm.presets import ModelConfig


@dataclass(frozen=True)
class BlockSpec:
    """``kind`` is ``"res"`` (``in_ch -> out_ch``), ``"down"`` or ``"up"`` (``in_ch``)."""

    kind: str
    in_ch: int
    out_ch: int


def unet_layout(config: ModelConfig) -> tuple[list[BlockSpec], list[BlockSpec], int]:
    """Down and up block specs and the width of the middle blocks."""
    ch = config.ch
    down, skips, now = [], [ch], ch
    for level, mult in enumerate(config.ch_mult):
        for _ in range(config.num_res_blocks):
            down.append(BlockSpec("res", now, ch * mult))
            now = ch * mult
            skips.append(now)
        if level != config.levels - 1:
            down.append(BlockSpec("down", now, now))
            skips.append(now)
    middle = now
    up = []
    for level, mult in reversed(list(enumerate(config.ch_mult))):
        for _ in range(config.num_res_blocks + 1):
            up.append(BlockSpec("res", skips.pop() + now, ch * mult))
            now = ch * mult
        if level != 0:
            up.append(BlockSpec("up", now, now))
    return down, up, middle


def run_unet(h, temb, down, middle, up, up_specs: list[BlockSpec]) -> torch.Tensor:
    """The U-Net's data flow: ``h`` through down, middle and up blocks with skips."""
    skips = [h]
    for block in down:
        h = block(h, temb)
        skips.append(h)
    for block in middle:
        h = block(h, temb)
    for block, spec in zip(up, up_specs):
        if spec.kind == "res":
            h = torch.cat([h, skips.pop()], dim=1)
        h = block(h, temb)
    return h
