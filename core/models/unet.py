"""The DDPM / improved-DDPM UNet: ResBlocks with scale-shift time(+class) conditioning,
self-attention at chosen feature-map sizes, skip connections between the two halves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from core.models.layers import (
    AttentionBlock,
    Downsample,
    EmbedSequential,
    ResBlock,
    SinusoidalEmbedding,
    Upsample,
    group_norm,
    zero_module,
)

MIN_BOTTOM_SIZE = 2   # the lowest level keeps at least a 2x2 map (GroupNorm of 1x1 is degenerate)


class ArchitectureError(ValueError):
    """An architecture argument does not fit the data. `argument` is the constructor argument
    (e.g. "attention_resolutions"), `value` its value, `reason` what would work."""

    def __init__(self, argument: str, value: Any, reason: str):
        self.argument = argument
        self.value = value
        self.reason = reason
        super().__init__(f"{argument}={value!r} does not fit: {reason}")


def feature_map_sizes(image_size: int, channel_mult: Sequence[int]) -> list[int]:
    """Side length of the feature maps at each level, e.g. 28, (1, 2, 2) -> [28, 14, 7].

    Raises ArchitectureError when a level would need a non-integer size or a map smaller
    than MIN_BOTTOM_SIZE, naming how many levels would work."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_BOTTOM_SIZE:
        raise ArchitectureError("image_size", image_size,
                                f"must be an integer of at least {MIN_BOTTOM_SIZE}")
    levels = len(channel_mult)
    if levels < 1:
        raise ArchitectureError("channel_mult", tuple(channel_mult), "needs at least one level")
    max_levels = 1
    while (image_size % 2 ** max_levels == 0
           and image_size // 2 ** max_levels >= MIN_BOTTOM_SIZE):
        max_levels += 1
    if levels > max_levels:
        factor = 2 ** (levels - 1)
        fewer = tuple(channel_mult[:max_levels])
        if image_size % factor:
            problem = (f"{levels} levels halve the image {levels - 1} times, so the image size "
                       f"must be divisible by {factor}, and {image_size} is not")
        else:
            problem = (f"{levels} levels shrink a {image_size}x{image_size} input to "
                       f"{image_size // factor}x{image_size // factor}, below the "
                       f"{MIN_BOTTOM_SIZE}x{MIN_BOTTOM_SIZE} minimum")
        raise ArchitectureError(
            "channel_mult", tuple(channel_mult),
            f"{problem}; use at most {max_levels} levels for {image_size}x{image_size} images, "
            f"e.g. channel_mult={fewer}",
        )
    return [image_size // 2 ** level for level in range(levels)]


class UNet(nn.Module):
    """Noise-prediction UNet (Ho et al. 2020; Nichol & Dhariwal 2021).

    emb = MLP(Sinusoidal(t)) [+ ClassEmbedding(y)], width 4 * model_channels.
    Down path: per level `num_res_blocks` ResBlocks (+ attention where the map side is in
    `attention_resolutions`), then a stride-2 Downsample (not after the last level).
    Middle: ResBlock, attention, ResBlock. Up path: per level `num_res_blocks + 1` ResBlocks on
    [h, skip] concatenated along channels, then a nearest Upsample. Out: GN, SiLU, zero conv.

    Class conditioning: an Embedding of num_classes + 1 rows; row `num_classes` is the null
    class of classifier-free guidance, and y=None means the null class for every sample.
    For a learned variance pass out_channels = 2 * in_channels ([eps, v] along dim 1).

    Options for networks trained elsewhere (core.interop maps diffusers' UNet2DModel and
    improved-/guided-diffusion onto them); every default is this explorer's own UNet:
    num_head_channels > 0 gives each attention layer C / num_head_channels heads (instead of
    num_heads); scale_shift_norm=False adds the embedding before the second norm of a res
    block; resblock_updown resamples with res blocks (avg pool / nearest) instead of the
    strided conv and the upsampling conv; norm_groups / norm_eps set every GroupNorm (gcd
    with the width, as group_norm); time_cos_first, time_freq_shift, time_scale shape the
    sinusoidal features (SinusoidalEmbedding); downsample_padding 0 pads only right and
    bottom (Downsample); middle_attention_norm=False drops the middle attention's GroupNorm.

    forward: x (B, in_channels, S, S) with S = image_size, t (B,) timesteps of the original
    schedule (any int, e.g. up to 20000), y (B,) long or None -> (B, out_channels, S, S).
    """

    data_ndim = 3   # one example is (C, H, W)

    def __init__(self, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], image_size: int,
                 dropout: float = 0.0, channel_mult: Sequence[int] = (1, 2, 2),
                 num_heads: int = 4, num_classes: int | None = None, *,
                 num_head_channels: int = 0, scale_shift_norm: bool = True,
                 resblock_updown: bool = False, norm_groups: int = 32, norm_eps: float = 1e-5,
                 time_cos_first: bool = True, time_freq_shift: float = 0.0,
                 time_scale: float = 1.0, downsample_padding: int = 1,
                 middle_attention_norm: bool = True):
        super().__init__()
        channel_mult = tuple(channel_mult)
        attention_resolutions = tuple(attention_resolutions)
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("model_channels", model_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("num_res_blocks", num_res_blocks)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("norm_groups", norm_groups)
        if num_head_channels:
            _check_positive_int("num_head_channels", num_head_channels)
        if num_classes is not None:
            _check_positive_int("num_classes", num_classes)
        if not all(isinstance(m, int) and m >= 1 for m in channel_mult):
            raise ArchitectureError("channel_mult", channel_mult, "must be positive integers")
        sizes = feature_map_sizes(image_size, channel_mult)
        _check_attention(attention_resolutions, sizes, image_size, model_channels,
                         channel_mult, num_head_channels or num_heads,
                         "num_head_channels" if num_head_channels else "num_heads")

        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.image_size = image_size
        self.num_classes = num_classes
        self.attention_resolutions = attention_resolutions
        self.channel_mult = channel_mult

        emb_channels = 4 * model_channels
        self.time_features = SinusoidalEmbedding(model_channels, cos_first=time_cos_first,
                                                 freq_shift=time_freq_shift,
                                                 time_scale=time_scale)
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_channels), nn.SiLU(),
            nn.Linear(emb_channels, emb_channels),
        )
        self.label_embed = (nn.Embedding(num_classes + 1, emb_channels)
                            if num_classes is not None else None)

        norm = {"norm_groups": norm_groups, "norm_eps": norm_eps}

        def res_block(ch_in: int, ch_out: int, resample: str | None = None) -> ResBlock:
            return ResBlock(ch_in, emb_channels, ch_out, dropout, resample=resample,
                            scale_shift_norm=scale_shift_norm, **norm)

        def attention(ch: int, with_norm: bool = True) -> AttentionBlock:
            heads = ch // num_head_channels if num_head_channels else num_heads
            return AttentionBlock(ch, heads, norm=with_norm, **norm)

        def res_stage(ch_in: int, ch_out: int, size: int) -> EmbedSequential:
            layers: list[nn.Module] = [res_block(ch_in, ch_out)]
            if size in attention_resolutions:
                layers.append(attention(ch_out))
            return EmbedSequential(*layers)

        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skip_channels = [model_channels]
        ch = model_channels
        for level, (mult, size) in enumerate(zip(channel_mult, sizes, strict=True)):
            for _ in range(num_res_blocks):
                self.input_blocks.append(res_stage(ch, model_channels * mult, size))
                ch = model_channels * mult
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.input_blocks.append(EmbedSequential(
                    res_block(ch, ch, "down") if resblock_updown
                    else Downsample(ch, downsample_padding)))
                skip_channels.append(ch)

        self.middle_block = EmbedSequential(
            res_block(ch, ch), attention(ch, middle_attention_norm), res_block(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            mult, size = channel_mult[level], sizes[level]
            for i in range(num_res_blocks + 1):
                stage = res_stage(ch + skip_channels.pop(), model_channels * mult, size)
                ch = model_channels * mult
                if level > 0 and i == num_res_blocks:
                    stage.append(res_block(ch, ch, "up") if resblock_updown else Upsample(ch))
                self.output_blocks.append(stage)

        self.out = nn.Sequential(
            group_norm(ch, norm_groups, norm_eps), nn.SiLU(),
            zero_module(nn.Conv2d(ch, out_channels, 3, padding=1)),
        )

    def set_checkpointing(self, enabled: bool) -> UNet:
        """Activation checkpointing of every res block (EmbedSequential.checkpointing)."""
        for module in self.modules():
            if isinstance(module, EmbedSequential):
                module.checkpointing = bool(enabled)
        return self

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int,
              dtype: torch.dtype) -> torch.Tensor:
        """Conditioning vector (B, 4 * model_channels) from timesteps and optional labels."""
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"UNet: t must have shape ({batch},), got {tuple(t.shape)}")
        emb = self.time_embed(self.time_features(t).to(dtype))
        if self.label_embed is None:
            if y is not None:
                raise ValueError("UNet: labels y were given but the model is unconditional "
                                 "(num_classes=None)")
            return emb
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
        if y.shape != (batch,):
            raise ValueError(f"UNet: y must have shape ({batch},), got {tuple(y.shape)}")
        return emb + self.label_embed(y).to(emb.dtype)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(x)
        emb = self.embed(t, y, x.shape[0], x.dtype)
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def _check_input(self, x: torch.Tensor) -> None:
        size, channels = self.image_size, self.in_channels
        expected = f"(B, {channels}, {size}, {size})"
        if x.ndim != 4:
            raise ValueError(f"UNet expects image batches {expected}, got shape {tuple(x.shape)}")
        _, c, h, w = x.shape
        if c != channels:
            raise ValueError(f"UNet was built for {channels} input channel(s), got {c} "
                             f"(shape {tuple(x.shape)}); expected {expected}")
        if h != w:
            raise ValueError(f"UNet needs square images, got {h}x{w}; resize or crop to "
                             f"{size}x{size}")
        if h != size:
            raise ValueError(f"UNet was built for image_size={size}, got {h}x{w} images; "
                             f"build it with image_size={h} (and matching attention_resolutions)")


def _check_positive_int(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArchitectureError(argument, value, "must be a positive integer")


def _check_attention(attention_resolutions: tuple[int, ...], sizes: list[int], image_size: int,
                     model_channels: int, channel_mult: tuple[int, ...], num_heads: int,
                     argument: str = "num_heads") -> None:
    """Attention only at feature-map sizes the model has; `num_heads` (the number of heads,
    or with argument "num_head_channels" the width of one) divides every attention width."""
    missing = [r for r in attention_resolutions if r not in sizes]
    if missing:
        raise ArchitectureError(
            "attention_resolutions", attention_resolutions,
            f"a {image_size}x{image_size} input with {len(sizes)} levels has feature maps of "
            f"side {sizes}, so attention can only go at those sizes, e.g. ({sizes[-1]},); "
            f"{missing} match none",
        )
    attention_widths = {model_channels * channel_mult[-1]}
    attention_widths |= {model_channels * m for m, s in zip(channel_mult, sizes, strict=True)
                         if s in attention_resolutions}
    bad = sorted(w for w in attention_widths if w % num_heads)
    if bad:
        raise ArchitectureError(
            argument, num_heads,
            f"must divide the channel count of every attention layer {sorted(attention_widths)}; "
            f"{bad} are not divisible by {num_heads}",
        )
