"""Denoising networks: the UNet for images, a residual MLP for vectors, and helpers to build
one from a ModelConfig and to describe it layer by layer.

All models are called as model(x, t, y=None): x (B, C, H, W) or (B, D), t (B,) timesteps of
the original schedule, y (B,) labels with `num_classes` the null class -> (B, C or 2C, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from core.config import ConfigError, ModelConfig
from core.models.layers import (
    AttentionBlock,
    Downsample,
    EmbedSequential,
    MLPResBlock,
    ResBlock,
    SinusoidalEmbedding,
    Upsample,
)
from core.models.mlp import MLPDenoiser
from core.models.unet import ArchitectureError, UNet, feature_map_sizes

__all__ = [
    "ArchitectureError", "AttentionBlock", "Downsample", "EmbedSequential", "MLPDenoiser",
    "MLPResBlock", "ModuleRow", "ResBlock", "SinusoidalEmbedding", "UNet", "Upsample",
    "UNET_OPTIONS", "build_model", "count_parameters", "describe_model", "feature_map_sizes",
    "unet_options",
]

# UNet constructor argument -> ModelConfig field, to name the field in ConfigError.
_CONFIG_FIELDS = {
    "model_channels": "channels", "channel_mult": "channel_mult",
    "attention_resolutions": "attention_resolutions", "num_heads": "num_heads",
    "num_res_blocks": "num_res_blocks", "num_head_channels": "num_head_channels",
    "norm_groups": "norm_groups",
}


def build_model(model_config: ModelConfig, data_shape: Sequence[int],
                num_classes: int | None = None, learn_sigma: bool = False) -> nn.Module:
    """A UNet for data_shape (C, H, W) or an MLPDenoiser for (D,), per model_config.kind.

    learn_sigma doubles the output channels (dim 1) for the learned-range variance.
    Raises ConfigError ("model.<field>") when a setting does not fit the data (for example
    attention at a feature-map size the image never has), ValueError for a kind that does
    not suit the data or for non-square images.
    """
    model_config.validate()
    data_shape = tuple(int(s) for s in data_shape)
    kind = model_config.kind
    if len(data_shape) == 3:
        if kind == "mlp":
            raise ValueError(
                f"model.kind 'mlp' is for vector data (D,), but the data are images of shape "
                f"{data_shape}; use kind 'unet' or 'auto' for images")
        channels, height, width = data_shape
        if height != width:
            raise ValueError(f"the UNet needs square images, the data are {height}x{width} "
                             f"(shape {data_shape}); resize or crop them to a square")
        try:
            return UNet(
                in_channels=channels,
                model_channels=model_config.channels,
                out_channels=2 * channels if learn_sigma else channels,
                num_res_blocks=model_config.num_res_blocks,
                attention_resolutions=model_config.attention_resolutions,
                image_size=height,
                dropout=model_config.dropout,
                channel_mult=model_config.channel_mult,
                num_heads=model_config.num_heads,
                num_classes=num_classes,
                **unet_options(model_config),
            ).set_checkpointing(model_config.checkpointing)
        except ArchitectureError as exc:
            if exc.argument not in _CONFIG_FIELDS:
                raise
            raise ConfigError(f"model.{_CONFIG_FIELDS[exc.argument]}", exc.value,
                              f"{exc.reason} (data shape {data_shape})") from None
    if len(data_shape) == 1:
        if kind == "unet":
            raise ValueError(
                f"model.kind 'unet' is for images (C, H, W), but the data are vectors of shape "
                f"{data_shape}; use kind 'mlp' or 'auto' for vector data")
        return MLPDenoiser(
            data_dim=data_shape[0], hidden=model_config.hidden,
            num_blocks=model_config.mlp_blocks, dropout=model_config.dropout,
            learn_sigma=learn_sigma, num_classes=num_classes,
        )
    raise ValueError(f"data_shape must be (C, H, W) for images or (D,) for vectors, "
                     f"got {data_shape}")


# ModelConfig fields passed to the UNet under the same name (details of imported networks)
UNET_OPTIONS = ("num_head_channels", "scale_shift_norm", "resblock_updown", "norm_groups",
                "norm_eps", "time_cos_first", "time_freq_shift", "time_scale",
                "downsample_padding", "middle_attention_norm")


def unet_options(model_config: ModelConfig) -> dict:
    """The UNet keyword arguments of model_config's UNET_OPTIONS fields."""
    return {name: getattr(model_config, name) for name in UNET_OPTIONS}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class ModuleRow(NamedTuple):
    """One module of describe_model's table.

    name: dotted path from the root ("" is the root, "input_blocks.1.0" a child of
    "input_blocks.1"); type: class name; params: parameters of the whole subtree;
    output_shape: output of one example without the batch dim (None if the module did not
    run, a tuple of shapes for tuple outputs); depth: number of dots + 1 (root 0);
    own_params: parameters held directly (the sum over all rows is count_parameters).
    """

    name: str
    type: str
    params: int
    output_shape: tuple | None
    depth: int
    own_params: int


def describe_model(model: nn.Module, example_input_shape: Sequence[int]) -> list[ModuleRow]:
    """Run one dummy example through `model` (eval mode, no grad, t = 0, null class for a
    class-conditional model) and record every submodule's output shape with forward hooks.

    example_input_shape: one example's shape, (C, H, W) or (D,); a leading batch dimension
    is accepted too. Rows come in named_modules order (parents before children).
    """
    shape = tuple(int(s) for s in example_input_shape)
    data_ndim = getattr(model, "data_ndim", len(shape))
    if len(shape) == data_ndim:
        shape = (1, *shape)
    elif len(shape) != data_ndim + 1:
        raise ValueError(f"describe_model: example_input_shape {shape} should be one example's "
                         f"shape with {data_ndim} dimensions (optionally with a batch dim)")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() \
        else torch.float32

    outputs: dict[str, tuple | None] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(_module, _inputs, output, name=name):
            outputs.setdefault(name, _per_example_shape(output))
        handles.append(module.register_forward_hook(hook))

    x = torch.zeros(shape, device=device, dtype=dtype)
    t = torch.zeros(shape[0], device=device, dtype=torch.long)
    kwargs = {}
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None:
        kwargs["y"] = torch.full((shape[0],), num_classes, device=device, dtype=torch.long)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x, t, **kwargs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    rows = []
    for name, module in model.named_modules():
        rows.append(ModuleRow(
            name=name,
            type=type(module).__name__,
            params=count_parameters(module),
            output_shape=outputs.get(name),
            depth=0 if name == "" else name.count(".") + 1,
            own_params=sum(p.numel() for p in module.parameters(recurse=False)),
        ))
    return rows


def _per_example_shape(output) -> tuple | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:])
    if isinstance(output, (tuple, list)):
        return tuple(_per_example_shape(o) for o in output)
    return None
