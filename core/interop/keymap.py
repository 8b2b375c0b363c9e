"""Tensor-by-tensor correspondence between the explorer's UNet and a UNet written elsewhere.

The explorer's UNet (core.models.unet) is walked once into `Part`s: each module with
weights, where it sits (stem, input / middle / output path, resolution level, index of the
res block in its level) and what it is. A `Naming` says what another code base calls each
part and how its tensors are laid out; `links` then pairs every tensor of ours with the
tensor(s) of theirs, and `to_theirs` / `to_ours` convert a whole state dict either way.

Layouts converted (C channels, H heads of d = C / H, E embedding width):
- attention qkv: ours is one Linear (3C, C) with rows [q | k | v], each [head 0 .. H-1];
  diffusers keeps three Linears to_q, to_k, to_v (C, C); improved-diffusion a 1x1 Conv1d
  (3C, C, 1) whose rows are [head][q, k, v] in its legacy order (QKVAttentionLegacy) and
  [q, k, v][head] in guided-diffusion's new order (QKVAttention).
- attention output: ours Linear (C, C); improved-diffusion Conv1d (C, C, 1).
- class embedding: ours has num_classes + 1 rows (the last: the null class of guidance);
  a code base without a null class has num_classes rows, and ours gets a zero last row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.models.layers import AttentionBlock, ResBlock, Upsample

RES_PARTS = ("in_layers.0", "in_layers.2", "emb_layers.1", "out_norm", "out_layers.2", "skip")


@dataclass(frozen=True)
class Part:
    """A module of the explorer's UNet. ours: its path ("input_blocks.4.1"); kind: "res",
    "attn", "conv", "linear", "norm" or "label"; role: "conv_in", "time_1", "time_2",
    "label", "res", "attn", "down", "up", "norm_out" or "conv_out"; section: "stem",
    "input", "middle" or "output"; level: resolution level (0 = full size); index: the res
    block's position in its level (in the middle: 0 or 1); levels: how many the UNet has."""

    ours: str
    kind: str
    role: str
    section: str
    level: int = 0
    index: int = 0
    levels: int = 1


@dataclass(frozen=True)
class Naming:
    """How another code base names and lays out the parts. prefix(part): its module path;
    res: our res-block sub-module -> theirs; attention_norm / attention_out: their names of
    the attention's GroupNorm and output projection; qkv: "split" (to_q/to_k/to_v under
    qkv_names), "conv_legacy" or "conv" (one Conv1d named "qkv"); conv1d_out: the output
    projection is a Conv1d; label_rows_missing: 1 when they have no null-class row."""

    prefix: Callable[[Part], str]
    res: dict[str, str]
    attention_norm: str
    attention_out: str
    qkv: str
    qkv_names: tuple[str, ...] = ("qkv",)
    conv1d_out: bool = False
    label_rows_missing: int = 1


@dataclass(frozen=True)
class Link:
    """One tensor of ours (a state-dict key) and the key(s) of theirs it is made from.
    transform: "same", "conv1d" (theirs has a trailing 1), "split" (three stacked blocks),
    "legacy" (head-major qkv rows of `count` heads, conv1d for weights), "rows" (theirs
    lacks our last `count` rows)."""

    ours: str
    theirs: tuple[str, ...]
    transform: str = "same"
    count: int = 0


def unet_parts(model: nn.Module) -> list[Part]:
    """The parts of a core.models.unet.UNet in state-dict order."""
    levels = len(model.channel_mult)
    res_blocks = len(model.output_blocks) // levels - 1
    parts = _unet_parts(model, levels, res_blocks)
    return [Part(p.ours, p.kind, p.role, p.section, p.level, p.index, levels) for p in parts]


def _unet_parts(model: nn.Module, levels: int, res_blocks: int) -> list[Part]:
    parts = [Part("time_embed.0", "linear", "time_1", "stem"),
             Part("time_embed.2", "linear", "time_2", "stem")]
    if model.label_embed is not None:
        parts.append(Part("label_embed", "label", "label", "stem"))
    parts.append(Part("input_blocks.0.0", "conv", "conv_in", "stem"))
    k = 1
    for level in range(levels):
        for j in range(res_blocks):
            parts += _stage(model.input_blocks[k], f"input_blocks.{k}", "input", level, j)
            k += 1
        if level < levels - 1:
            down = model.input_blocks[k][0]
            kind, path = ("res", f"input_blocks.{k}.0") if isinstance(down, ResBlock) \
                else ("conv", f"input_blocks.{k}.0.conv")
            parts.append(Part(path, kind, "down", "input", level, res_blocks))
            k += 1
    parts += [Part("middle_block.0", "res", "res", "middle", 0, 0),
              Part("middle_block.1", "attn", "attn", "middle", 0, 0),
              Part("middle_block.2", "res", "res", "middle", 0, 1)]
    k = 0
    for level in reversed(range(levels)):
        for j in range(res_blocks + 1):
            parts += _stage(model.output_blocks[k], f"output_blocks.{k}", "output", level, j)
            k += 1
    parts += [Part("out.0", "norm", "norm_out", "stem"), Part("out.2", "conv", "conv_out", "stem")]
    return parts


def _stage(stage: nn.Module, path: str, section: str, level: int, index: int) -> list[Part]:
    parts = []
    for m, child in enumerate(stage):
        if m == 0:
            parts.append(Part(f"{path}.0", "res", "res", section, level, index))
        elif isinstance(child, AttentionBlock):
            parts.append(Part(f"{path}.{m}", "attn", "attn", section, level, index))
        elif isinstance(child, ResBlock):
            parts.append(Part(f"{path}.{m}", "res", "up", section, level, index))
        elif isinstance(child, Upsample):
            parts.append(Part(f"{path}.{m}.conv", "conv", "up", section, level, index))
    return parts


def links(model: nn.Module, naming: Naming) -> list[Link]:
    """Every tensor of `model`'s state dict paired with theirs (model may be on `meta`)."""
    result = []
    for part in unet_parts(model):
        ours, theirs = part.ours, naming.prefix(part)
        module = model.get_submodule(ours)
        if part.kind == "res":
            for sub in RES_PARTS:
                if isinstance(module.get_submodule(sub), nn.Identity):
                    continue
                for name in ("weight", "bias"):
                    result.append(Link(f"{ours}.{sub}.{name}",
                                       (f"{theirs}.{naming.res[sub]}.{name}",)))
        elif part.kind == "attn":
            result += _attention_links(module, ours, theirs, naming)
        elif part.kind == "label":
            result.append(Link(f"{ours}.weight", (f"{theirs}.weight",),
                               "rows" if naming.label_rows_missing else "same",
                               naming.label_rows_missing))
        else:
            result += [Link(f"{ours}.{name}", (f"{theirs}.{name}",)) for name in ("weight", "bias")]
    return result


def _attention_links(module: AttentionBlock, ours: str, theirs: str,
                     naming: Naming) -> list[Link]:
    result = []
    if not isinstance(module.norm, nn.Identity):
        result += [Link(f"{ours}.norm.{name}", (f"{theirs}.{naming.attention_norm}.{name}",))
                   for name in ("weight", "bias")]
    for name in ("weight", "bias"):
        if naming.qkv == "split":
            result.append(Link(f"{ours}.qkv.{name}",
                               tuple(f"{theirs}.{q}.{name}" for q in naming.qkv_names), "split"))
        elif naming.qkv == "conv_legacy":
            result.append(Link(f"{ours}.qkv.{name}", (f"{theirs}.qkv.{name}",), "legacy",
                               module.num_heads))
        else:
            result.append(Link(f"{ours}.qkv.{name}", (f"{theirs}.qkv.{name}",),
                               "conv1d" if name == "weight" else "same"))
        out = "conv1d" if naming.conv1d_out and name == "weight" else "same"
        result.append(Link(f"{ours}.proj_out.{name}", (f"{theirs}.{naming.attention_out}.{name}",),
                           out))
    return result


def to_theirs(state: dict[str, torch.Tensor], pairs: list[Link]) -> dict[str, torch.Tensor]:
    """Our state dict in their names and layouts (works on `meta` tensors: shapes only)."""
    out = {}
    for link in pairs:
        tensor = state[link.ours]
        if link.transform == "split":
            out.update(zip(link.theirs, tensor.chunk(3, dim=0), strict=True))
            continue
        if link.transform == "legacy":
            rest = tensor.shape[1:]
            tensor = tensor.reshape(3, link.count, -1, *rest).transpose(0, 1).reshape(-1, *rest)
            if tensor.ndim == 2:
                tensor = tensor[:, :, None]
        elif link.transform == "conv1d":
            tensor = tensor[:, :, None]
        elif link.transform == "rows":
            tensor = tensor[: tensor.shape[0] - link.count]
        out[link.theirs[0]] = tensor.contiguous()
    return out


def to_ours(theirs: dict[str, torch.Tensor], pairs: list[Link],
            expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their state dict (names and shapes already checked) as ours, float32. `expected` is
    our state dict (any device) for the shapes, e.g. of the model on `meta`."""
    out = {}
    for link in pairs:
        tensors = [theirs[key].float() for key in link.theirs]
        if link.transform == "split":
            tensor = torch.cat(tensors, dim=0)
        else:
            tensor = tensors[0]
            if link.transform in ("conv1d", "legacy") and tensor.ndim == 3:
                tensor = tensor[:, :, 0]
            if link.transform == "legacy":
                rest = tensor.shape[1:]
                tensor = tensor.reshape(link.count, 3, -1, *rest).transpose(0, 1).reshape(-1, *rest)
            elif link.transform == "rows":
                tensor = torch.cat([tensor, tensor.new_zeros(link.count, *tensor.shape[1:])])
        out[link.ours] = tensor.reshape(expected[link.ours].shape).contiguous()
    return out
