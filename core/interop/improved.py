"""Open an improved-diffusion / guided-diffusion state dict (.pt) with its flags, and guess
the flags from the tensor shapes (for a dialog to prefill).

Their UNetModel and the explorer's UNet have the same blocks in the same order and mostly
the same names (input_blocks.k.m, middle_block.m, output_blocks.k.m, time_embed, out); the
differences (core.interop.keymap does the layouts):

    ResBlock     out_layers.0 (GroupNorm)  -> out_norm       out_layers.3 -> out_layers.2
                 skip_connection           -> skip
    Downsample   op (strided conv)         -> conv
    Attention    qkv, proj_out: Conv1d (3C, C, 1), (C, C, 1) -> Linear (3C, C), (C, C);
                 legacy order rows [head][q, k, v] (improved-diffusion, guided-diffusion
                 without use_new_attention_order) -> [q, k, v][head]
    label_emb    (num_classes, E)          -> label_embed (num_classes + 1, E), zero null row
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.build import diffusion_from_config
from core.interop.convert import load_weights
from core.interop.errors import InteropError
from core.interop.improved_flags import (
    CHANNEL_MULTS,
    GUIDED_DEFAULTS,
    IMPROVED_DEFAULTS,
    flags_text,
    map_flags,
    parse_flags,
)
from core.interop.keymap import Naming, Part
from core.interop.opened import IMPROVED, OpenedModel, experiment_config
from core.interop.weights import read_safetensors, read_torch_file

FLAGS_FILES = ("{stem}.flags.json", "flags.json")
_RES = {"in_layers.0": "in_layers.0", "in_layers.2": "in_layers.2",
        "emb_layers.1": "emb_layers.1", "out_norm": "out_layers.0", "out_layers.2": "out_layers.3",
        "skip": "skip_connection"}


def naming(legacy: bool) -> Naming:
    """improved-/guided-diffusion's names; legacy: the qkv rows are head-major."""
    return Naming(prefix=_prefix, res=_RES, attention_norm="norm", attention_out="proj_out",
                  qkv="conv_legacy" if legacy else "conv", conv1d_out=True, label_rows_missing=1)


def _prefix(part: Part) -> str:
    if part.role == "label":
        return "label_emb"
    if part.role == "down" and part.kind == "conv":
        return part.ours.removesuffix(".conv") + ".op"
    return part.ours


def read_state(path: Path) -> dict:
    """The state dict in a .safetensors or torch file; diffusers' weights (conv_in, ...) are
    refused with the folder to give instead."""
    state = read_safetensors(path) if path.suffix == ".safetensors" else read_torch_file(path)
    if "conv_in.weight" in state and "input_blocks.0.0.weight" not in state:
        raise InteropError(path, "holds diffusers UNet2DModel weights; give the folder that "
                                 "holds them with their config.json (or the pipeline folder)")
    return state


def flags_beside(path: Path) -> Path | None:
    """A flags file next to the state dict: NAME.flags.json, else flags.json."""
    for pattern in FLAGS_FILES:
        candidate = path.parent / pattern.format(stem=path.stem)
        if candidate.is_file():
            return candidate
    return None


def open_improved(path: Path, flags=None, device="cpu", guess: bool = False) -> OpenedModel:
    """The state dict at `path` with `flags` (a dict, a JSON file or pasted text; None: a
    flags file beside it, or with guess=True the flags guessed from the tensors)."""
    if flags is None:
        flags = flags_beside(path)
    guessed = False
    if flags is not None:              # bad flags are refused before the weights are read
        source = flags if isinstance(flags, Path) else "--model-flags"
        parsed = parse_flags(flags, source)
        mapped = map_flags(parsed, source)
        state = read_state(path)
    else:
        state = read_state(path)
        guessed_flags = guess_flags(state, path)
        if not guess:
            raise InteropError(path, "an improved-diffusion state dict needs the flags it was "
                                     "trained with: give --model-flags '--image_size ...' (or a "
                                     "JSON file), or put flags.json beside it; guessed from its "
                                     f"tensors: {flags_text(guessed_flags.flags)}")
        source, guessed = "flags guessed from the tensors", True
        parsed = parse_flags(guessed_flags.flags, source)
        mapped = map_flags(parsed, source)
    model, dtype_notes = load_weights(mapped.model, mapped.data_shape, mapped.num_classes,
                                      mapped.learn_sigma, state, naming(mapped.heads_legacy),
                                      path, device)
    config = experiment_config(mapped.model, mapped.diffusion, mapped.data_shape,
                               mapped.num_classes, path.stem)
    notes = parsed.notes + dtype_notes
    if guessed:
        notes.insert(0, "flags guessed from the tensor shapes (num_heads, image_size and the "
                        "diffusion flags cannot be seen there): check them")
    if mapped.num_classes is not None:
        notes.append(f"{mapped.num_classes} classes + a zero null-class row for unconditional "
                     "calls (y=None)")
    return OpenedModel(model=model, diffusion=diffusion_from_config(config, "image"),
                       config=config, data_shape=mapped.data_shape,
                       num_classes=mapped.num_classes, format=IMPROVED, path=str(path),
                       mapped=mapped.mapped, notes=notes, flags=parsed.values,
                       flags_guessed=guessed)


@dataclass
class FlagGuess:
    """Flags read off a state dict. flags: a full flag set (what the tensors show, the
    repo's defaults for the rest); determined: the names the tensors fix. image_size,
    num_heads, use_new_attention_order and every diffusion flag except learn_sigma are
    not in the tensors: guesses to confirm."""

    flags: dict
    determined: tuple[str, ...]


def guess_flags_of(path) -> FlagGuess:
    """guess_flags of the state dict in a file (what a dialog asking for flags prefills);
    InteropError when it cannot be read or is not such a state dict."""
    from core.interop.errors import local_path

    path = local_path(path)
    return guess_flags(read_state(path), path)


def guess_flags(state: dict, source="state dict") -> FlagGuess:
    """Flags from the names and shapes of an improved-/guided-diffusion UNet state dict."""
    if "input_blocks.0.0.weight" not in state or "out.2.weight" not in state:
        raise InteropError(source, "is not an improved-/guided-diffusion UNet state dict (it "
                                   "lacks input_blocks.0.0.weight or out.2.weight)")
    width, in_channels = state["input_blocks.0.0.weight"].shape[:2]
    out_channels = state["out.2.weight"].shape[0]
    outputs = 1 + max(_indices(state, "output_blocks"), default=-1)
    ups = [j for j in range(outputs) if any(f"output_blocks.{j}.{m}.{name}" in state
                                            for m in (1, 2) for name in
                                            ("conv.weight", "in_layers.0.weight"))]
    res_blocks = ups[0] if ups else outputs - 1
    levels = max(outputs // (res_blocks + 1), 1)
    updown = bool(ups) and f"output_blocks.{ups[0]}.{_last(state, ups[0])}.in_layers.0.weight" in state
    mult, attention = [], []
    for level in range(levels):
        k = 1 + level * (res_blocks + 1)
        key = f"input_blocks.{k}.0.in_layers.2.weight"
        if key not in state:
            raise InteropError(source, f"lacks {key} (the first res block of level {level})")
        mult.append(int(state[key].shape[0]) // int(width))
        attention.append(f"input_blocks.{k}.1.qkv.weight" in state)
    emb_rows = state["input_blocks.1.0.emb_layers.1.weight"].shape[0]
    size = next((s for s, m in CHANNEL_MULTS.items() if m == tuple(mult)), 2 ** (levels + 1))
    # guided-diffusion's released models resample with res blocks and keep t unscaled;
    # improved-diffusion's defaults rescale t to 0..1000
    flags = dict(GUIDED_DEFAULTS if updown else IMPROVED_DEFAULTS, image_size=size,
                 in_channels=int(in_channels), num_channels=int(width),
                 num_res_blocks=res_blocks,
                 attention_resolutions=",".join(str(size // 2 ** level) for level in range(levels)
                                                if attention[level]),
                 learn_sigma=out_channels == 2 * in_channels,
                 use_scale_shift_norm=emb_rows == 2 * mult[0] * width,
                 class_cond="label_emb.weight" in state,
                 num_classes=int(state["label_emb.weight"].shape[0]) if "label_emb.weight" in state
                 else 1000)
    if updown:
        flags["resblock_updown"] = True
    if CHANNEL_MULTS.get(size) != tuple(mult):
        flags["channel_mult"] = ",".join(map(str, mult))
    determined = ("in_channels", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma",
                  "use_scale_shift_norm", "resblock_updown", "class_cond", "num_classes")
    return FlagGuess(flags, determined)


def _indices(state: dict, prefix: str) -> set[int]:
    pattern = re.compile(rf"{prefix}\.(\d+)\.")
    return {int(m.group(1)) for key in state if (m := pattern.match(key))}


def _last(state: dict, block: int) -> int:
    return max(int(m.group(1)) for key in state
               if (m := re.match(rf"output_blocks\.{block}\.(\d+)\.", key)))
