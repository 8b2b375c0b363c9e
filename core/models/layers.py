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


def group_norm(channels: int, max_groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, max_groups) groups: 32 for wide layers, fewer when 32 does
    not divide `channels` (e.g. 48 -> 16, 24 -> 8), never an invalid split. (B, C, ...) -> same."""
    return nn.GroupNorm(math.gcd(channels, max_groups), channels, eps=eps)


class SinusoidalEmbedding(nn.Module):
    """Transformer position features of a (possibly large) timestep.

    With half = dim // 2, s = time_scale and f_j = max_period^(-j / (half - freq_shift)),
    j = 0..half-1:
        emb(t) = [cos(s t f_0), ..., cos(s t f_{half-1}), sin(s t f_0), ..., sin(s t f_{half-1})]
    (zero-padded to `dim` when dim is odd), as improved-diffusion's `timestep_embedding`.
    cos_first=False puts the sines first; freq_shift and cos_first are diffusers'
    `freq_shift` and `flip_sin_to_cos`, time_scale improved-diffusion's rescale_timesteps
    (1000 / T). The defaults (shift 0, cosines first, scale 1) are this explorer's own UNet.
    Computed in float32 whatever the module dtype, so t up to ~20000 keeps its resolution.

    forward: t (B,) integer or float -> (B, dim) float32.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, cos_first: bool = True,
                 freq_shift: float = 0.0, time_scale: float = 1.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"SinusoidalEmbedding dim must be at least 2, got {dim}")
        if not freq_shift < dim // 2:
            raise ValueError(f"SinusoidalEmbedding freq_shift must be below dim // 2 = "
                             f"{dim // 2}, got {freq_shift}")
        self.dim = dim
        self.max_period = max_period
        self.cos_first = bool(cos_first)
        self.freq_shift = float(freq_shift)
        self.time_scale = float(time_scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Frequencies are built here, not kept as a buffer, so model.half()/.bfloat16() cannot
        # round them; the order of the float32 operations is the one of improved-diffusion and
        # diffusers, so imported models see bit-identical features.
        half = self.dim // 2
        exponents = -math.log(self.max_period) * torch.arange(half, device=t.device,
                                                               dtype=torch.float32)
        frequencies = torch.exp(exponents / (half - self.freq_shift))
        times = t.float() if self.time_scale == 1.0 else t.float() * self.time_scale
        angles = times[:, None] * frequencies[None, :]
        waves = [torch.cos(angles), torch.sin(angles)]
        emb = torch.cat(waves if self.cos_first else waves[::-1], dim=1)
        if self.dim % 2:
            emb = F.pad(emb, (0, 1))
        return emb


class ResBlock(nn.Module):
    """Residual block with scale-shift conditioning (improved-diffusion, use_scale_shift_norm).

        h = Conv3x3(R(SiLU(GN(x))))
        scale, shift = Linear(SiLU(emb)) split in two
        h = ZeroConv3x3(Dropout(SiLU(GN(h) * (1 + scale) + shift)))
        out = skip(R(x)) + h,   skip = identity or a 1x1 conv when the width changes.

    With scale_shift_norm=False the embedding is added instead: GN(h + Linear(SiLU(emb)))
    (DDPM's original block; diffusers' resnet_time_scale_shift "default"). R is the identity,
    or with resample "down" a 2x2 average pool and with "up" a nearest x2 upsampling
    (guided-diffusion's resblock_updown), applied to both branches.

    forward: x (B, C_in, H, W), emb (B, E) -> (B, C_out, H', W') with H' = H, H/2 or 2H.
    """

    def __init__(self, in_channels: int, emb_channels: int, out_channels: int | None = None,
                 dropout: float = 0.0, *, scale_shift_norm: bool = True,
                 resample: str | None = None, norm_groups: int = 32, norm_eps: float = 1e-5):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_shift_norm = bool(scale_shift_norm)
        self.in_layers = nn.Sequential(
            group_norm(in_channels, norm_groups, norm_eps), nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
        self.resample = _resampler(resample)
        emb_width = 2 * out_channels if scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_width))
        self.out_norm = group_norm(out_channels, norm_groups, norm_eps)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if in_channels == out_channels:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.in_layers[2](self.resample(self.in_layers[1](self.in_layers[0](x))))
            x = self.resample(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + emb_out)
        return self.skip(x) + self.out_layers(h)


def _resampler(kind: str | None) -> nn.Module | None:
    """The parameter-free resampling of a ResBlock: None, "down" (2x2 mean) or "up" (nearest)."""
    if kind is None:
        return None
    if kind == "down":
        return nn.AvgPool2d(2)
    if kind == "up":
        return nn.Upsample(scale_factor=2.0, mode="nearest")
    raise ValueError(f"ResBlock resample must be None, 'down' or 'up', got {kind!r}")


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, zero-initialised output.

        tokens = GN(x) as (B, N, C);  q, k, v = split(Linear(tokens)) into num_heads heads
        out = x + ZeroLinear(softmax(q k^T / sqrt(C / num_heads)) v)   (scaled_dot_product_attention)

    The qkv rows are [q of head 0..h-1, k of ..., v of ...] (improved-diffusion's "new"
    attention order, diffusers' to_q/to_k/to_v stacked). With norm=False the GroupNorm is
    left out (diffusers' middle attention with scale-shift res blocks).
    Tokens are taken as x.flatten(2).transpose(1, 2), a free view for channels-last tensors.
    forward: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, num_heads: int = 4, *, norm: bool = True,
                 norm_groups: int = 32, norm_eps: float = 1e-5):
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(
                f"AttentionBlock: num_heads={num_heads} must be a positive divisor of "
                f"channels={channels}"
            )
        self.channels = channels
        self.num_heads = num_heads
        self.norm = group_norm(channels, norm_groups, norm_eps) if norm else nn.Identity()
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
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2) for even H, W.

    padding 1 pads every side by one; padding 0 pads only the right and bottom by one (the
    TensorFlow "SAME" of DDPM's original code, diffusers' downsample_padding=0)."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        if padding not in (0, 1):
            raise ValueError(f"Downsample padding must be 0 or 1, got {padding!r}")
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
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
