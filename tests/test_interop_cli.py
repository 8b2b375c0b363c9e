"""The command line on models from elsewhere: `inspect` and `export`, and `sample` /
`evaluate` with a diffusers folder or an improved-diffusion .pt at --checkpoint. Exit codes:
0 done, 2 bad input (one line on stderr naming the file, key or flag), 1 the run failed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.cli import main
from core.interop import DOWNLOAD_HINT

diffusers = pytest.importorskip("diffusers")

from interop_models import (  # noqa: E402
    SMALL_SCHEDULER,
    SMALL_UNET,
    make_checkpoint,
    random_unet,
    write_pipeline,
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interop-cli") / "small-pipeline"
    scheduler = {**SMALL_SCHEDULER, "num_train_timesteps": 20}     # a short VLB for evaluate
    return write_pipeline(folder, random_unet(SMALL_UNET, seed=9), SMALL_UNET, scheduler)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()                 # what ran before (diffusers' progress bars) is not ours
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_inspect_prints_what_was_recognised(capsys, pipeline):
    code, out, err = run(capsys, "inspect", pipeline)
    assert code == 0, err
    assert "format: diffusers pipeline" in out and "parameters" in out
    assert "diffusion: T = 20, schedule cosine, mean_type v, variance_type learned_range" in out
    assert "classes: 10" in out and "mapped: num_class_embeds -> 10 classes" in out
    code, out, _ = run(capsys, "inspect", pipeline, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["network"]["output_channels"] == 2
    assert summary["network"]["options"]["middle_attention_norm"] is False


def test_inspect_of_a_hub_id_downloads_nothing(capsys):
    code, _, err = run(capsys, "inspect", "google/ddpm-cifar10-32")
    assert code == 2 and DOWNLOAD_HINT in one_error_line(err)


def test_sample_and_evaluate_a_diffusers_folder(capsys, pipeline, tmp_path):
    npy = tmp_path / "samples.npy"
    code, _, err = run(capsys, "sample", "--checkpoint", pipeline, "--n", 2, "--sampler", "ddim",
                       "--steps", 5, "--label", 3, "--npy", npy, "--device", "cpu")
    assert code == 0, err
    samples = np.load(npy)
    assert samples.shape == (2, 1, 16, 16) and np.isfinite(samples).all()

    code, _, err = run(capsys, "evaluate", "--checkpoint", pipeline, "--n", 2, "--device", "cpu")
    assert code == 2 and "--dataset" in one_error_line(err)
    code, out, err = run(capsys, "evaluate", "--checkpoint", pipeline, "--dataset", "digits",
                         "--n", 2, "--batch-size", 2, "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert result["step"] is None and result["dataset"] == "digits"
    assert np.isfinite(result["bits_per_dim"])


def test_an_improved_diffusion_state_dict_with_pasted_flags(capsys, tmp_path):
    from core.interop import open_model
    from core.interop.convert import export_weights
    from core.interop.improved import naming

    flags = ("--image_size 16 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
             "--attention_resolutions 8 --diffusion_steps 50")
    (tmp_path / "flags.json").write_text(json.dumps({"image_size": 16}))   # not used: the flag wins
    guess = tmp_path / "guess.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(1)}, guess)
    code, _, err = run(capsys, "sample", "--checkpoint", guess, "--model-flags", "--image_size",
                       "--npy", tmp_path / "x.npy")
    assert code == 2 and "--model-flags" in one_error_line(err)

    # a state dict in improved-diffusion's names, written with the conversion under test's
    # inverse (the layouts themselves are checked in test_interop_improved)
    model = open_model(make_checkpoint(tmp_path / "run.safetensors")).model
    torch.save(export_weights(model, naming(legacy=True)), tmp_path / "model.pt")
    mapped = ("--image_size 8 --in_channels 1 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 "
              "--attention_resolutions 4 --diffusion_steps 1000 --rescale_timesteps False")
    code, _, err = run(capsys, "sample", "--checkpoint", tmp_path / "model.pt", "--model-flags",
                       mapped, "--n", 2, "--sampler", "ddim", "--steps", 3, "--npy",
                       tmp_path / "s.npy", "--device", "cpu")
    assert code == 0, err
    code, _, err = run(capsys, "sample", "--checkpoint", tmp_path / "model.pt", "--model-flags",
                       flags, "--npy", tmp_path / "t.npy")
    assert code == 2 and "has shape" in one_error_line(err)       # the flags do not fit


def test_export_exit_codes(capsys, pipeline, tmp_path):
    out = tmp_path / "exported"
    code, _, err = run(capsys, "export", "--checkpoint", pipeline, "--format", "diffusers",
                       "--out", out)
    assert code == 0, err
    assert isinstance(diffusers.DDPMPipeline.from_pretrained(out).unet, diffusers.UNet2DModel)

    code, _, err = run(capsys, "export", "--checkpoint", pipeline, "--out", out)
    assert code == 2 and "exists and is not empty; pass --force" in one_error_line(err)
    code, _, err = run(capsys, "export", "--checkpoint", pipeline, "--model-flags", "--a 1",
                       "--out", tmp_path / "other")
    assert code == 2 and "flags are for improved-diffusion" in one_error_line(err)

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "unet").write_text("a file where the unet folder goes")
    code, _, err = run(capsys, "export", "--checkpoint", pipeline, "--out", blocked, "--force")
    assert code == 1 and "cannot be written" in one_error_line(err)
    assert not (blocked / "model_index.json").exists()


def test_export_refuses_an_mlp_and_foreign_flags_on_a_checkpoint(capsys, tmp_path):
    from tiny_configs import tiny_toy_config

    from core.checkpoint import save_checkpoint
    from core.training import Trainer

    save_checkpoint(tmp_path / "toy.safetensors", Trainer(tiny_toy_config(steps=1)))
    code, _, err = run(capsys, "export", "--checkpoint", tmp_path / "toy.safetensors",
                       "--out", tmp_path / "pipe")
    assert code == 2 and "an MLP" in one_error_line(err)
    assert not (tmp_path / "pipe").exists()
    code, _, err = run(capsys, "sample", "--checkpoint", tmp_path / "toy.safetensors",
                       "--dataset", "digits", "--npy", tmp_path / "x.npy")
    assert code == 2 and "--dataset is for models trained elsewhere" in one_error_line(err)
