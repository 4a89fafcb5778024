"""A small, configurable UNet (DDPM/diffusers-style: res blocks + attention + GroupNorm).

One network for every image paper: what it predicts and what its noise input means are the
parameterisation's business (denoisers.py); the UNet only embeds a scalar per example.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    # Transformer sinusoidal features (Vaswani 2017), as DDPM used for its timestep input.
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    # Zero-init output layers so every block starts as identity (the course's UNet did the same).
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, channels, groups, head_dim=32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        o = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(o.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """UNet over [B, C, H, W]; `t` is one scalar per example (a timestep, t in [0,1], c_noise, ...).

    `time_multiplier` multiplies t before the sinusoidal embedding so that t in [0, 1] and timestep
    indices in [0, 1000) both spread over the embedding's frequencies.
    `time_conditioning=False` builds the course's "t-free" network that never sees the noise level.
    """

    def __init__(self, in_channels=1, out_channels=None, channels=(32, 64, 128), blocks_per_level=1,
                 attention_levels=(2,), groups=8, dropout=0.0, time_multiplier=1.0, time_conditioning=True):
        super().__init__()
        out_channels = out_channels or in_channels
        self.time_multiplier = time_multiplier
        self.time_conditioning = time_conditioning
        temb = 4 * channels[0]
        self.temb_dim = channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)

        self.down = nn.ModuleList()
        skips, c = [channels[0]], channels[0]
        for level, width in enumerate(channels):
            for _ in range(blocks_per_level):
                self.down.append(nn.ModuleList([ResBlock(c, width, temb, groups, dropout),
                                                Attention(width, groups) if level in attention_levels else nn.Identity()]))
                c = width
                skips.append(c)
            if level < len(channels) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)

        self.mid = nn.ModuleList([ResBlock(c, c, temb, groups, dropout), Attention(c, groups),
                                  ResBlock(c, c, temb, groups, dropout)])

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            for _ in range(blocks_per_level + 1):
                self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), width, temb, groups, dropout),
                                              Attention(width, groups) if level in attention_levels else nn.Identity()]))
                c = width
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))

        self.norm_out = nn.GroupNorm(min(groups, c), c)
        self.conv_out = _zero(nn.Conv2d(c, out_channels, 3, padding=1))

    def forward(self, x, t):
        if not self.time_conditioning:
            t = torch.zeros(x.shape[0], device=x.device)
        emb = self.time_mlp(timestep_embedding(t * self.time_multiplier, self.temb_dim).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, emb))
            else:
                h = layer(h)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, hs.pop()], dim=1), emb))
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
