"""Small building blocks of the denoising networks (after openai/improved-diffusion).

Shapes: B batch, C channels, H x W feature map, E embedding width, N = H*W tokens.
Every block that ends a residual branch starts with a zero-initialised last layer, so at
initialisation each residual block is the identity (improved-diffusion's `zero_module`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to zero and return it (for last layers of branches)."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, 32) groups: 32 for wide layers, fewer when 32 does not
    divide `channels` (e.g. 48 -> 16, 24 -> 8), never an invalid split. (B, C, ...) -> same."""
    return nn.GroupNorm(math.gcd(channels, max_groups), channels)


class SinusoidalEmbedding(nn.Module):
    """Transformer position features of a (possibly large) timestep.

    With half = dim // 2 and f_j = max_period^(-j / half), j = 0..half-1:
        emb(t) = [cos(t f_0), ..., cos(t f_{half-1}), sin(t f_0), ..., sin(t f_{half-1})]
    (zero-padded to `dim` when dim is odd), as improved-diffusion's `timestep_embedding`.
    Computed in float32 whatever the module dtype, so t up to ~20000 keeps its resolution.

    forward: t (B,) integer or float -> (B, dim) float32.
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"SinusoidalEmbedding dim must be at least 2, got {dim}")
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Frequencies are built here, not kept as a buffer, so model.half()/.bfloat16() cannot
        # round them.
        half = self.dim // 2
        exponents = torch.arange(half, device=t.device, dtype=torch.float32) / half
        frequencies = torch.exp(-math.log(self.max_period) * exponents)
        angles = t.float()[:, None] * frequencies[None, :]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        if self.dim % 2:
            emb = F.pad(emb, (0, 1))
        return emb


class ResBlock(nn.Module):
    """Residual block with scale-shift conditioning (improved-diffusion, use_scale_shift_norm).

        h = Conv3x3(SiLU(GN(x)))
        scale, shift = Linear(SiLU(emb)) split in two
        h = ZeroConv3x3(Dropout(SiLU(GN(h) * (1 + scale) + shift)))
        out = skip(x) + h,   skip = identity or a 1x1 conv when the width changes.

    forward: x (B, C_in, H, W), emb (B, E) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, emb_channels: int, out_channels: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, zero-initialised output.

        tokens = GN(x) as (B, N, C);  q, k, v = split(Linear(tokens)) into num_heads heads
        out = x + ZeroLinear(softmax(q k^T / sqrt(C / num_heads)) v)   (scaled_dot_product_attention)

    Tokens are taken as x.flatten(2).transpose(1, 2), a free view for channels-last tensors.
    forward: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(
                f"AttentionBlock: num_heads={num_heads} must be a positive divisor of "
                f"channels={channels}"
            )
        self.channels = channels
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        head_dim = channels // self.num_heads
        tokens = self.norm(x).flatten(2).transpose(1, 2)                  # (B, N, C)
        qkv = self.qkv(tokens).reshape(batch, height * width, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                    # each (B, h, N, d)
        attended = F.scaled_dot_product_attention(q, k, v)                # (B, h, N, d)
        attended = attended.transpose(1, 2).reshape(batch, height * width, channels)
        out = self.proj_out(attended).transpose(1, 2).reshape(batch, channels, height, width)
        return x + out


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2) for even H, W."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EmbedSequential(nn.Sequential):
    """nn.Sequential that hands the conditioning embedding to the children that take one
    (ResBlock, MLPResBlock). forward: x, emb (B, E) -> the last child's output.

    With `checkpointing` set, a ResBlock's activations are not kept for the backward pass
    but recomputed there (torch.utils.checkpoint, non-reentrant, RNG state preserved so
    dropout draws the same mask): less memory for ~one more forward of those blocks."""

    checkpointing = False

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if not isinstance(layer, (ResBlock, MLPResBlock)):
                x = layer(x)
            elif self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, emb, use_reentrant=False)
            else:
                x = layer(x, emb)
        return x


class MLPResBlock(nn.Module):
    """The ResBlock for vectors: LayerNorm instead of GroupNorm, Linear instead of Conv.

        h = Linear(SiLU(LN(x)));  scale, shift = Linear(SiLU(emb))
        out = x + ZeroLinear(Dropout(SiLU(LN(h) * (1 + scale) + shift)))

    forward: x (B, W), emb (B, E) -> (B, W).
    """

    def __init__(self, width: int, emb_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * width))
        self.out_norm = nn.LayerNorm(width)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_module(nn.Linear(width, width)),
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb).to(h.dtype).chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return x + self.out_layers(h)
