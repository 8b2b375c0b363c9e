"""How closely models opened from diffusers and improved-diffusion agree with their
reference implementations, and the explorer's DDIM with diffusers' on an export: the max
absolute differences that docs/ARCHITECTURE.md and the README quote.

Run from the repository root (CPU, about a minute, nothing downloaded; needs diffusers):
    .venv/bin/python bench/interop_agreement.py
The models are the tests' own (tests/interop_models.py, tests/test_interop_improved.py):
diffusers' UNet2DModel with seeded random weights in google/ddpm-cifar10-32's configuration
and a small class-conditional learned-variance one; improved-diffusion state dicts built
from the tests' layout of its UNetModel and its forward pass re-implemented there.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from interop_models import SMALL_SCHEDULER, SMALL_UNET, make_checkpoint, random_unet, write_pipeline  # noqa: E402
from test_interop_diffusers import CIFAR10_SCHEDULER, CIFAR10_UNET  # noqa: E402
from test_interop_improved import (  # noqa: E402
    CIFAR_FLAGS,
    GUIDED_FLAGS,
    IMAGENET64_FLAGS,
    random_state,
    reference_forward,
)

from core.generate import sample  # noqa: E402
from core.interop import open_model  # noqa: E402
from core.interop.export import export_diffusers  # noqa: E402
from core.interop.improved_flags import parse_flags  # noqa: E402


def diffusers_rows(folder: Path) -> dict:
    rows = {}
    for name, config, scheduler, labels in (
            ("diffusers ddpm-cifar10-32 config", CIFAR10_UNET, CIFAR10_SCHEDULER, None),
            ("diffusers small class-cond learned-variance", SMALL_UNET, SMALL_SCHEDULER, [1, 7])):
        reference = random_unet(config)
        opened = open_model(write_pipeline(folder / name.replace(" ", "-"), reference, config,
                                           scheduler))
        size, channels = config["sample_size"], config["in_channels"]
        x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([7, 199])
        kwargs = {"class_labels": torch.tensor(labels)} if labels else {}
        with torch.no_grad():
            f32 = (opened.model(x, t, *kwargs.values()) - reference(x, t, **kwargs).sample)
            f64 = (opened.model.double()(x.double(), t, *kwargs.values())
                   - reference.double()(x.double(), t, **kwargs).sample)
        rows[name] = {"float32": f32.abs().max().item(), "float64": f64.abs().max().item()}
    return rows


def improved_rows(folder: Path) -> dict:
    rows = {}
    for name, flags, labels in (("improved-diffusion CIFAR-10 flags", CIFAR_FLAGS, None),
                                ("improved-diffusion 64x64 class_cond", IMAGENET64_FLAGS, [5]),
                                ("guided-diffusion options", GUIDED_FLAGS, None)):
        values = parse_flags(flags).values
        state = random_state(values)
        torch.save(state, folder / "model.pt")
        opened = open_model(folder / "model.pt", flags=flags)
        size = values["image_size"]
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
        t, y = torch.tensor([321]), torch.tensor(labels) if labels else None
        with torch.no_grad():
            f32 = opened.model(x, t, y) - reference_forward(state, values, x, t, y, torch.float32)
            f64 = opened.model.double()(x.double(), t, y) - reference_forward(state, values, x, t, y)
        rows[name] = {"float32": f32.abs().max().item(), "float64": f64.abs().max().item()}
    return rows


def ddim_rows(folder: Path) -> dict:
    import diffusers

    rows = {}
    for schedule, mean_type in (("linear", "eps"), ("cosine", "v"), ("sigmoid", "x0")):
        opened = open_model(make_checkpoint(folder / f"{schedule}.safetensors", schedule=schedule,
                                            mean_type=mean_type))
        export_diffusers(opened, folder / f"{schedule}-pipe")
        pipe = diffusers.DDIMPipeline.from_pretrained(folder / f"{schedule}-pipe")
        pipe.set_progress_bar_config(disable=True)
        theirs = pipe(batch_size=8, generator=torch.Generator().manual_seed(7), eta=0.0,
                      num_inference_steps=50, use_clipped_model_output=True,
                      output_type="np").images
        noise = torch.randn((8, 1, 8, 8), generator=torch.Generator().manual_seed(7))
        ours = sample(opened.model, opened.diffusion, 8, opened.data_shape, sampler="ddim",
                      steps=50, spacing="trailing", noise=noise, options={"eta": 0.0},
                      record_every=10**9)
        images = np.clip(ours.final / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
        rows[f"DDIM 50 steps, eta 0, {schedule} / {mean_type}"] = {
            "images in [0, 1]": float(np.abs(theirs - images).max())}
    return rows


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as folder:
        rows = {**diffusers_rows(Path(folder)), **improved_rows(Path(folder)),
                **ddim_rows(Path(folder))}
    for name, values in rows.items():
        print(f"{name}: " + ", ".join(f"{k} max |diff| {v:.2e}" for k, v in values.items()))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
