"""Build the explorer's UNet for a foreign architecture and move weights in and out of it.

The network is always core.models.unet.UNet, built from a ModelConfig (with the options
for networks trained elsewhere) without ModelConfig's training limits, so any size the UNet
itself can build opens (e.g. six levels at 256x256). Loading checks their state dict
against what our architecture would export on the `meta` device (names and shapes, nothing
allocated), so a malformed file is refused naming the key before any weight is copied.
"""

from __future__ import annotations

import torch
from torch import nn

from core.config import ModelConfig
from core.interop.errors import InteropError
from core.interop.keymap import Naming, links, to_ours, to_theirs
from core.interop.weights import check_finite, check_state
from core.models import UNET_OPTIONS, ArchitectureError, AttentionBlock, UNet, unet_options


def build_unet(model_config: ModelConfig, data_shape: tuple[int, ...], num_classes: int | None,
               learn_sigma: bool, source, device=None) -> UNet:
    """The UNet of model_config for images of data_shape (C, S, S); InteropError naming
    `source` when the UNet cannot be built (e.g. attention at a size the model never has)."""
    channels, size = data_shape[0], data_shape[-1]
    try:
        with torch.device(device or "cpu"):
            return UNet(
                in_channels=channels, model_channels=model_config.channels,
                out_channels=2 * channels if learn_sigma else channels,
                num_res_blocks=model_config.num_res_blocks,
                attention_resolutions=model_config.attention_resolutions, image_size=size,
                dropout=model_config.dropout, channel_mult=model_config.channel_mult,
                num_heads=model_config.num_heads, num_classes=num_classes,
                **unet_options(model_config))
    except (ArchitectureError, ValueError) as exc:
        raise InteropError(source, f"describes a UNet the explorer cannot build ({exc})") from None


def load_weights(model_config: ModelConfig, data_shape: tuple[int, ...],
                 num_classes: int | None, learn_sigma: bool, state: dict[str, torch.Tensor],
                 naming: Naming, source, device="cpu") -> tuple[UNet, list[str]]:
    """The UNet with `state` (their names and layouts) loaded: frozen, eval mode, on
    `device`. Returns (model, notes). InteropError naming `source` and the first key at fault
    for a missing, unexpected or mis-shaped tensor, or one holding NaN or infinity."""
    meta = build_unet(model_config, data_shape, num_classes, learn_sigma, source, "meta")
    pairs = links(meta, naming)
    our_shapes = meta.state_dict()
    expected = {key: tensor.shape for key, tensor in to_theirs(our_shapes, pairs).items()}
    notes = check_state(expected, state, source)
    check_finite(state, source)
    model = build_unet(model_config, data_shape, num_classes, learn_sigma, source)
    model.load_state_dict(to_ours(state, pairs, our_shapes))
    return frozen(model, device), notes


def export_weights(model: nn.Module, naming: Naming) -> dict[str, torch.Tensor]:
    """model's state dict in their names and layouts: contiguous CPU float32 copies that
    share no memory (as safetensors needs)."""
    state = {key: value.detach().to("cpu", torch.float32) for key, value in
             model.state_dict().items()}
    return {key: value.clone().contiguous() for key, value in
            to_theirs(state, links(model, naming)).items()}


def frozen(model: nn.Module, device="cpu") -> nn.Module:
    """model on `device`, in eval mode, without gradients (as checkpoints give it)."""
    model.requires_grad_(False)
    return model.to(device).eval()


def same_network(a: ModelConfig, b: ModelConfig, data_shape: tuple[int, ...],
                 num_classes: int | None, learn_sigma: bool) -> bool:
    """Whether two model configs build the same function: equal tensor names and shapes,
    heads per attention layer and UNet options (num_heads 4 of width 32 is the same network
    as num_head_channels 32 there). Built on `meta`: nothing is allocated."""
    try:
        built = [build_unet(config, data_shape, num_classes, learn_sigma, "", "meta")
                 for config in (a, b)]
    except InteropError:
        return False
    shapes = [{k: tuple(v.shape) for k, v in m.state_dict().items()} for m in built]
    heads = [[m.num_heads for m in model.modules() if isinstance(m, AttentionBlock)]
             for model in built]
    options = [{k: getattr(c, k) for k in UNET_OPTIONS if k != "num_head_channels"}
               for c in (a, b)]
    return shapes[0] == shapes[1] and heads[0] == heads[1] and options[0] == options[1]
