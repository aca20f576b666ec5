"""The Spiking U-Net of SDDPM (Cao et al.): only spikes travel between its convolutions.

Shapes: the analog stream between blocks is ``[T*B, C, H, W]`` (T spiking timesteps
fused timestep-major into the batch); every convolution inside the network reads the
spikes of an IF population, except the 1x1 shortcuts, which read the analog block input.

Structure (reference code of the paper):

- encoding: ``conv3x3(img->ch) -> BN -> IF -> conv3x3(ch->ch) -> BN`` on the image
  repeated T times; its analog output is the first skip;
- :class:`PreSpikeResBlock`: ``IF -> conv3x3 -> BN -> +temb -> IF -> conv3x3 -> BN``
  plus ``shortcut(x)`` (1x1 conv when the width changes, identity otherwise);
- or, for the paper's ablation (``block="standard"``), :class:`StandardSpikingResBlock`:
  ``s = IF(x)``, ``conv3x3 -> BN -> +temb -> IF -> conv3x3 -> BN -> IF``, plus the
  input spikes ``s`` (through ``1x1 conv -> BN -> IF`` when the width changes): two
  spike trains added, values in {0, 1, 2};
- :class:`SpikingDownsample`: ``IF -> conv3x3 stride 2 -> BN``;
- :class:`SpikingUpsample`: ``IF -> nearest x2 -> conv3x3 -> BN``;
- skips concatenated by channel before every up block;
- :class:`AnalogDecoder`: ``BN -> Swish -> conv3x3(ch->img)``, then
  ``h + Swish(BN(Conv3d_(3,3,1)(h)))``, then ``eps = sum_t 0.8^(T-1-t) h_t``.
"""

from __future__ import annotations

import torch
from torch import nn

from sddpm.neurons import MultiStepIF
from sddpm.presets import ModelConfig
from sddpm.time_embedding import TimeEmbedding
from sddpm.unet_layout import BlockSpec, run_unet, unet_layout

DECODER_DECAY = 0.8


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def add_per_sample(h: torch.Tensor, per_sample: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``h [T*B, C, H, W] + per_sample [B, C]``, broadcast over T, H and W."""
    tb, c, height, width = h.shape
    h = h.view(timesteps, tb // timesteps, c, height, width)
    return (h + per_sample[None, :, :, None, None]).view(tb, c, height, width)


class SpikingEncoder(nn.Module):
    """Analog image ``[T*B, img, H, W]`` -> analog stream ``[T*B, ch, H, W]``."""

    def __init__(self, *, image_channels: int, ch: int, timesteps: int, backend: str,
                 fires_on: str = ">"):
        super().__init__()
        self.conv1 = _conv3x3(image_channels, ch)
        self.bn1 = nn.BatchNorm2d(ch)
        self.neuron = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv2 = _conv3x3(ch, ch)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.neuron(self.bn1(self.conv1(x)))))


class PreSpikeResBlock(nn.Module):
    """Residual block whose convolutions read spikes; input and output are analog."""

    def __init__(self, *, in_ch: int, out_ch: int, tdim: int, timesteps: int, backend: str,
                 fires_on: str = ">"):
        super().__init__()
        self.timesteps = timesteps
        self.neuron1 = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv1 = _conv3x3(in_ch, out_ch)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.temb_proj = nn.Sequential(nn.SiLU(), nn.Linear(tdim, out_ch))
        self.neuron2 = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.conv1(self.neuron1(x)))
        h = add_per_sample(h, self.temb_proj(temb), self.timesteps)
        h = self.bn2(self.conv2(self.neuron2(h)))
        return h + self.shortcut(x)


class StandardSpikingResBlock(nn.Module):
    """The conventional spiking residual block the paper's ablation compares against
    (section 4.2, Eq. 10-13, Fig. 3(b)): conv-BN-spike, and the shortcut carries the
    block's input spikes, so the output is a sum of two spike trains (0, 1 or 2).

    Our reading of the brief text: the block spikes its input first, as every stage of
    this U-Net does (the streams between stages are currents: skips concatenate them
    and the decoder reads them), and adds after the last spike neuron (the {0, 1, 2}
    case of section 4.2); the sum enters the next stage as its current. Where the
    width changes, the shortcut is ``1x1 conv -> BN -> IF`` so that both terms stay
    spikes (a 1x1 conv alone would add an analog term).
    """

    def __init__(self, *, in_ch: int, out_ch: int, tdim: int, timesteps: int, backend: str,
                 fires_on: str = ">"):
        super().__init__()
        self.timesteps = timesteps
        self.neuron0 = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv1 = _conv3x3(in_ch, out_ch)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.temb_proj = nn.Sequential(nn.SiLU(), nn.Linear(tdim, out_ch))
        self.neuron1 = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.neuron2 = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch),
                MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        s = self.neuron0(x)
        h = add_per_sample(self.bn1(self.conv1(s)), self.temb_proj(temb), self.timesteps)
        h = self.neuron2(self.bn2(self.conv2(self.neuron1(h))))
        return h + self.shortcut(s)


RES_BLOCKS = {"prespike": PreSpikeResBlock, "standard": StandardSpikingResBlock}


class SpikingDownsample(nn.Module):
    def __init__(self, *, ch: int, timesteps: int, backend: str, fires_on: str = ">"):
        super().__init__()
        self.neuron = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.conv = _conv3x3(ch, ch, stride=2)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.neuron(x)))


class SpikingUpsample(nn.Module):
    def __init__(self, *, ch: int, timesteps: int, backend: str, fires_on: str = ">"):
        super().__init__()
        self.neuron = MultiStepIF(timesteps=timesteps, backend=backend, fires_on=fires_on)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = _conv3x3(ch, ch)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.upsample(self.neuron(x))))


class AnalogDecoder(nn.Module):
    """Analog stream ``[T*B, ch, H, W]`` -> predicted noise ``[B, img, H, W]``."""

    def __init__(self, *, ch: int, image_channels: int, timesteps: int):
        super().__init__()
        self.timesteps = timesteps
        self.bn = nn.BatchNorm2d(ch)
        self.act = nn.SiLU()
        self.conv = _conv3x3(ch, image_channels)
        # kernel (3, 3, 1) over [B, C, H, W, T]: no mixing across spiking timesteps
        self.conv_t = nn.Conv3d(image_channels, image_channels, (3, 3, 1), padding=(1, 1, 0))
        self.bn_t = nn.BatchNorm3d(image_channels)
        weights = DECODER_DECAY ** torch.arange(timesteps - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("decay_weights", weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.act(self.bn(x)))
        tb, c, height, width = h.shape
        h = h.view(self.timesteps, tb // self.timesteps, c, height, width).permute(1, 2, 3, 4, 0)
        h = h + self.act(self.bn_t(self.conv_t(h)))
        return (h * self.decay_weights.to(h.dtype)).sum(dim=-1)


class SpikingUNet(nn.Module):
    """Noise predictor ``eps(x_t [B, img, H, W], t [B]) -> [B, img, H, W]``.

    Parameters
    ----------
    config : ModelConfig
        Architecture; ``config.timesteps`` is T.
    neuron : str
        Neuron backend (see :mod:`sddpm.neurons`).
    """

    def __init__(self, config: ModelConfig, neuron: str = "snntorch"):
        super().__init__()
        self.config = config
        T, ch = config.timesteps, config.ch
        tdim = 4 * ch
        self.time_embedding = TimeEmbedding(num_steps=config.diffusion_steps, ch=ch, tdim=tdim)
        self.encoder = SpikingEncoder(
            image_channels=config.image_channels, ch=ch, timesteps=T, backend=neuron,
            fires_on=config.fires_on,
        )
        down, up, middle = unet_layout(config)
        self.up_specs = up

        def block(spec):
            if spec.kind == "res":
                return RES_BLOCKS[config.block](
                    in_ch=spec.in_ch, out_ch=spec.out_ch, tdim=tdim, timesteps=T,
                    backend=neuron, fires_on=config.fires_on)
            kind = SpikingDownsample if spec.kind == "down" else SpikingUpsample
            return kind(ch=spec.in_ch, timesteps=T, backend=neuron, fires_on=config.fires_on)

        self.down = nn.ModuleList(block(spec) for spec in down)
        self.middle = nn.ModuleList(block(BlockSpec("res", middle, middle)) for _ in range(2))
        self.up = nn.ModuleList(block(spec) for spec in up)
        now = up[-1].out_ch
        self.decoder = AnalogDecoder(
            ch=now, image_channels=config.image_channels, timesteps=T
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        T = self.config.timesteps
        temb = self.time_embedding(t)
        h = self.encoder(x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:]))
        h = run_unet(h, temb, self.down, self.middle, self.up, self.up_specs)
        return self.decoder(h)
