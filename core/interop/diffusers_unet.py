"""diffusers' UNet2DModel (the DDPM / DDIM pipelines' network) <-> the explorer's UNet.

The two are the same network (Ho et al. 2020's UNet) with different names, so a config.json
maps onto a ModelConfig and the weights convert exactly, tensor for tensor (core.interop.
keymap). What maps (diffusers key -> ModelConfig field):

    block_out_channels = channels * channel_mult     layers_per_block -> num_res_blocks
    down/up_block_types: (Attn)DownBlock2D at level l, mirrored by (Attn)UpBlock2D
        -> attention_resolutions = the feature-map sizes sample_size / 2^l of Attn levels
    attention_head_dim d -> num_head_channels d (None: one head per layer, num_heads 1)
    norm_num_groups, norm_eps -> norm_groups, norm_eps (attn_norm_num_groups: the same, or
        None; with resnet_time_scale_shift "scale_shift" None leaves the middle attention
        without its GroupNorm -> middle_attention_norm false)
    resnet_time_scale_shift "default" / "scale_shift" -> scale_shift_norm false / true
    flip_sin_to_cos, freq_shift -> time_cos_first, time_freq_shift
    downsample_padding 1 / 0 -> downsample_padding 1 / 0 (0: pad right and bottom only)
    num_class_embeds M -> num_classes M (the explorer adds a zero null-class row), or M - 1
        when the folder was exported here (explorer_config.json says the last row is the
        null class)
    sample_size, in_channels; out_channels = in_channels or 2 x in_channels (learned variance)
    dropout -> dropout

Everything else must have the value the DDPM pipelines use, or the config is refused with
the key and value named (e.g. time_embedding_type "fourier", mid_block_scale_factor 2,
AttnSkipDownBlock2D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.config import ModelConfig
from core.interop.errors import InteropError
from core.interop.keymap import Naming, Part

# UNet2DModel.__init__'s defaults (diffusers 0.20 to 0.42): what a key missing from
# config.json means.
UNET_DEFAULTS = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2,
    "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv",
    "upsample_type": "conv", "dropout": 0.0, "act_fn": "silu", "attention_head_dim": 8,
    "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "num_train_timesteps": None,
}
# keys that must keep this value (the DDPM pipelines' UNet)
_FIXED = {"center_input_sample": False, "time_embedding_type": "positional",
          "time_embedding_dim": None, "mid_block_type": "UNetMidBlock2D",
          "mid_block_scale_factor": 1, "downsample_type": "conv", "upsample_type": "conv",
          "act_fn": "silu", "add_attention": True, "class_embed_type": None}
_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}
_SHIFT = {"default": False, "scale_shift": True}
_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
        "out_norm": "norm2", "out_layers.2": "conv2", "skip": "conv_shortcut"}
_STEM = {"conv_in": "conv_in", "time_1": "time_embedding.linear_1",
         "time_2": "time_embedding.linear_2", "label": "class_embedding",
         "norm_out": "conv_norm_out", "conv_out": "conv_out"}


@dataclass
class UNetSpec:
    """What a UNet2DModel config.json describes, in the explorer's terms. data_shape (C, S, S);
    learn_sigma: out_channels = 2C; null_class_row: the class embedding's last row is the
    explorer's null class (an export from here); mapped / notes: lines for `inspect`."""

    model: ModelConfig
    data_shape: tuple[int, int, int]
    num_classes: int | None
    learn_sigma: bool
    null_class_row: bool = False
    mapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def spec_from_config(config: dict, source, null_class_row: bool = False) -> UNetSpec:
    """The UNetSpec of a UNet2DModel config (the dict of its config.json); InteropError
    naming `source`, the key and the value for anything the explorer's UNet cannot be."""
    def refuse(key: str, why: str):
        raise InteropError(source, f"{key} {config.get(key, UNET_DEFAULTS.get(key))!r} {why}")

    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise InteropError(source, f"_class_name {name!r} is not supported (supported: "
                                   "'UNet2DModel', the network of the DDPM and DDIM pipelines)")
    get = {**UNET_DEFAULTS, **config}.get
    notes = [f"config.json lacks {key!r}: diffusers' default {UNET_DEFAULTS[key]!r} is used"
             for key in ("attention_head_dim", "norm_eps", "flip_sin_to_cos", "freq_shift",
                         "downsample_padding", "resnet_time_scale_shift") if key not in config]
    notes += [f"{key} {config[key]!r} is not a UNet2DModel setting and is ignored"
              for key in sorted(config) if not key.startswith("_") and key not in UNET_DEFAULTS]
    for key, value in _FIXED.items():
        if get(key) != value:
            refuse(key, f"is not supported (supported: {value!r})")

    size = get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not _positive_int(size):
        refuse("sample_size", "is not supported (supported: the side of square images)")
    channels, out_channels = get("in_channels"), get("out_channels")
    if not _positive_int(channels):
        refuse("in_channels", "must be a positive integer")
    if out_channels not in (channels, 2 * channels):
        refuse("out_channels", f"is not supported (supported: {channels} = in_channels, or "
                               f"{2 * channels} for a learned variance)")
    widths = get("block_out_channels")
    if (not isinstance(widths, (list, tuple)) or not widths
            or not all(_positive_int(w) for w in widths)):
        refuse("block_out_channels", "must be a list of positive integers")
    if any(w % widths[0] for w in widths):
        refuse("block_out_channels", f"is not supported (supported: multiples of the first "
                                     f"width {widths[0]}, the explorer's channel_mult)")
    attention = _attention_levels(get("down_block_types"), get("up_block_types"), len(widths),
                                  refuse)
    if not _positive_int(get("layers_per_block")):
        refuse("layers_per_block", "must be a positive integer")
    shift = get("resnet_time_scale_shift")
    if shift not in _SHIFT:
        refuse("resnet_time_scale_shift", f"is not supported (supported: {', '.join(map(repr, _SHIFT))})")
    groups, attn_groups = get("norm_num_groups"), get("attn_norm_num_groups")
    if not _positive_int(groups):
        refuse("norm_num_groups", "must be a positive integer")
    if attn_groups not in (None, groups):
        refuse("attn_norm_num_groups", f"is not supported (supported: null or norm_num_groups "
                                       f"{groups}: the explorer has one group count)")
    if get("downsample_padding") not in (0, 1):
        refuse("downsample_padding", "is not supported (supported: 1, or 0 = pad right and "
                                     "bottom only)")
    head_dim = get("attention_head_dim")
    if head_dim is not None and not _positive_int(head_dim):
        refuse("attention_head_dim", "is not supported (supported: null or one positive integer)")
    sizes = [size // 2 ** level for level in range(len(widths))]
    attention_widths = [widths[-1]] + [w for w, a in zip(widths, attention, strict=True) if a]
    if head_dim is not None and any(w % head_dim for w in attention_widths):
        refuse("attention_head_dim", f"does not divide the width of every attention layer "
                                     f"{sorted(set(attention_widths))}")
    num_classes = get("num_class_embeds")
    if num_classes is not None and not _positive_int(num_classes):
        refuse("num_class_embeds", "must be null or a positive integer")
    null_row = bool(null_class_row and num_classes is not None and num_classes >= 2)
    dropout = get("dropout")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        refuse("dropout", "must be a number in [0, 1)")
    if not isinstance(get("flip_sin_to_cos"), bool):
        refuse("flip_sin_to_cos", "must be true or false")
    for key in ("freq_shift", "norm_eps"):
        if isinstance(get(key), bool) or not isinstance(get(key), (int, float)) \
                or not math.isfinite(get(key)):
            refuse(key, "must be a finite number")

    model = ModelConfig(
        kind="unet", channels=widths[0], channel_mult=tuple(w // widths[0] for w in widths),
        num_res_blocks=get("layers_per_block"),
        attention_resolutions=tuple(s for s, a in zip(sizes, attention, strict=True) if a),
        num_heads=1 if head_dim is None else ModelConfig.num_heads, dropout=float(dropout),
        num_head_channels=head_dim or 0, scale_shift_norm=_SHIFT[shift], norm_groups=groups,
        norm_eps=float(get("norm_eps")), time_cos_first=get("flip_sin_to_cos"),
        time_freq_shift=float(get("freq_shift")), downsample_padding=get("downsample_padding"),
        middle_attention_norm=not (_SHIFT[shift] and attn_groups is None))
    spec = UNetSpec(model, (channels, size, size),
                    None if num_classes is None else num_classes - null_row,
                    out_channels == 2 * channels, null_row, notes=notes)
    spec.mapped = _mapped_lines(config, spec)
    return spec


def _attention_levels(down, up, levels: int, refuse) -> list[bool]:
    """Which levels have attention; the up path must mirror the down path."""
    for key, blocks, known in (("down_block_types", down, _DOWN), ("up_block_types", up, _UP)):
        if not isinstance(blocks, (list, tuple)) or len(blocks) != levels:
            refuse(key, f"must list one block type per entry of block_out_channels ({levels})")
        unknown = [b for b in blocks if b not in known]
        if unknown:
            refuse(key, f"holds {unknown[0]!r}, which is not supported (supported: "
                        f"{', '.join(map(repr, known))})")
    attention = [_DOWN[b] for b in down]
    if [_UP[b] for b in up] != attention[::-1]:
        refuse("up_block_types", "does not mirror down_block_types (the explorer's UNet has "
                                 "attention at the same sizes on both paths)")
    return attention


def _mapped_lines(config: dict, spec: UNetSpec) -> list[str]:
    m = spec.model
    lines = [f"block_out_channels {list(config.get('block_out_channels', []))} -> channels "
             f"{m.channels} x channel_mult {list(m.channel_mult)}",
             f"layers_per_block -> num_res_blocks {m.num_res_blocks}; Attn blocks -> attention "
             f"at sizes {list(m.attention_resolutions)} (and the middle)",
             ("attention_head_dim null -> one head per attention layer" if not m.num_head_channels
              else f"attention_head_dim -> num_head_channels {m.num_head_channels}"),
             f"resnet_time_scale_shift -> scale_shift_norm {str(m.scale_shift_norm).lower()}; "
             f"norm_num_groups {m.norm_groups}, norm_eps {m.norm_eps:g}",
             f"flip_sin_to_cos {str(m.time_cos_first).lower()}, freq_shift {m.time_freq_shift:g}; "
             f"downsample_padding {m.downsample_padding}"]
    if spec.num_classes is not None:
        lines.append(f"num_class_embeds -> {spec.num_classes} classes"
                     + (" (the last row is the null class)" if spec.null_class_row
                        else " (+ a zero null-class row for unconditional calls)"))
    if spec.learn_sigma:
        lines.append("out_channels = 2 x in_channels -> [output, variance v] (learned range)")
    return lines


def naming(state_keys=(), null_class_row: bool = False) -> Naming:
    """diffusers' names; attention weights saved before diffusers 0.14 ("query", "key",
    "value", "proj_attn", which diffusers itself still reads) when `state_keys` use them.
    null_class_row: their class embedding holds our null-class row (an export from here)."""
    deprecated = any(key.endswith(".proj_attn.weight") for key in state_keys)
    return Naming(prefix=_prefix, res=_RES, attention_norm="group_norm",
                  attention_out="proj_attn" if deprecated else "to_out.0", qkv="split",
                  qkv_names=("query", "key", "value") if deprecated else ("to_q", "to_k", "to_v"),
                  label_rows_missing=0 if null_class_row else 1)


def _prefix(part: Part) -> str:
    if part.section == "stem":
        return _STEM[part.role]
    if part.section == "middle":
        return "mid_block.attentions.0" if part.kind == "attn" else f"mid_block.resnets.{part.index}"
    if part.kind == "res" and part.role != "res":
        raise ValueError("diffusers' UNet2DModel has no res-block resampling")
    block = (f"down_blocks.{part.level}" if part.section == "input"
             else f"up_blocks.{part.levels - 1 - part.level}")
    if part.role == "down":
        return f"{block}.downsamplers.0.conv"
    if part.role == "up":
        return f"{block}.upsamplers.0.conv"
    return f"{block}.{'attentions' if part.kind == 'attn' else 'resnets'}.{part.index}"


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def unet_config(spec: UNetSpec, model, version: str, source) -> dict:
    """The UNet2DModel config.json of the explorer's UNet `model` built from spec.model;
    InteropError naming `source` and the setting that diffusers' UNet2DModel cannot hold."""
    from torch import nn

    from core.models import AttentionBlock

    m = spec.model
    if m.resblock_updown:
        raise InteropError(source, "model.resblock_updown true cannot be exported: diffusers' "
                                   "UNet2DModel resamples with convolutions only")
    if m.time_scale != 1.0:
        raise InteropError(source, f"model.time_scale {m.time_scale:g} (rescaled timesteps) cannot "
                                   "be exported: diffusers' UNet2DModel feeds t unscaled")
    groups = {norm.num_groups for norm in model.modules() if isinstance(norm, nn.GroupNorm)}
    if groups != {m.norm_groups}:
        raise InteropError(source, f"its GroupNorms use {sorted(groups)} groups (gcd of each width "
                                   f"with model.norm_groups {m.norm_groups}); diffusers' UNet2DModel "
                                   "has one group count for every norm: model.channels a multiple "
                                   f"of {m.norm_groups} exports")
    attention = [a for a in model.modules() if isinstance(a, AttentionBlock)]
    head_dims = sorted({a.channels // a.num_heads for a in attention})
    one_head = all(a.num_heads == 1 for a in attention)
    if len(head_dims) > 1 and not one_head:
        raise InteropError(source, f"model.num_heads {m.num_heads} gives attention heads of widths "
                                   f"{head_dims}; diffusers' UNet2DModel has one attention_head_dim "
                                   "(set model.num_head_channels)")
    shift = "scale_shift" if m.scale_shift_norm else "default"
    if not m.middle_attention_norm and not m.scale_shift_norm:
        raise InteropError(source, "model.middle_attention_norm false needs scale_shift_norm true "
                                   "to be exported (diffusers' UNet2DModel)")
    channels, size = spec.data_shape[0], spec.data_shape[-1]
    sizes = [size // 2 ** level for level in range(len(m.channel_mult))]
    attn = [s in m.attention_resolutions for s in sizes]
    down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    up = ["AttnUpBlock2D" if a else "UpBlock2D" for a in attn[::-1]]
    shift_value = int(m.time_freq_shift) if m.time_freq_shift == int(m.time_freq_shift) \
        else m.time_freq_shift
    return {
        "_class_name": "UNet2DModel", "_diffusers_version": version, "sample_size": size,
        "in_channels": channels, "out_channels": 2 * channels if spec.learn_sigma else channels,
        "center_input_sample": False, "time_embedding_type": "positional",
        "time_embedding_dim": None, "freq_shift": shift_value, "flip_sin_to_cos": m.time_cos_first,
        "down_block_types": down, "mid_block_type": "UNetMidBlock2D", "up_block_types": up,
        "block_out_channels": [m.channels * k for k in m.channel_mult],
        "layers_per_block": m.num_res_blocks, "mid_block_scale_factor": 1,
        "downsample_padding": m.downsample_padding, "downsample_type": "conv",
        "upsample_type": "conv", "dropout": m.dropout, "act_fn": "silu",
        "attention_head_dim": None if one_head else head_dims[0],
        "norm_num_groups": m.norm_groups,
        "attn_norm_num_groups": m.norm_groups if m.middle_attention_norm else None,
        "norm_eps": m.norm_eps, "resnet_time_scale_shift": shift, "add_attention": True,
        "class_embed_type": None,
        "num_class_embeds": None if spec.num_classes is None else spec.num_classes + 1,
        "num_train_timesteps": None,
    }
