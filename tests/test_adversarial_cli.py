"""Red team, the CLI (issue 14): every numeric flag bounded and named, outputs checked before
any work and written atomically to exactly the path given, non-finite samples never written,
an unwritable train --out refused at the start, and a 2-D scatter plot with axes."""

from __future__ import annotations

import errno
import json
import os
import sys

import numpy as np
import pytest
import torch
from checkpoint_files import rewrite
from PIL import Image
from test_training import tiny_config

import core.cli.common as cli_common
import core.training
from core.checkpoint import save_checkpoint
from core.cli import main
from core.cli.pictures import nice_ticks, picture_formats, scatter_plot
from core.training import Trainer

TOY = {"train": {"dataset": "8gaussians", "num_samples": 400, "steps": 4}}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """An unconditional 2-D checkpoint (T = 20) and a class-conditional one (8 classes)."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, train in (("plain", {}), ("labels", {"class_conditional": True})):
        trainer = Trainer(tiny_config(train={**TOY["train"], **train}))
        trainer.run(4)
        paths[name] = folder / f"{name}.ckpt"
        save_checkpoint(paths[name], trainer)
    return paths


def fails(capsys, argv, code=2) -> str:
    """main(argv) exits with `code` and prints one line "error: ..."; that line."""
    assert main([str(a) for a in argv]) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# ------------------------------------------------------------- 7. numeric flags
SAMPLE = ["sample", "--checkpoint", "x.ckpt", "--npy", "x.npy"]
TRAIN = ["train", "--preset", "toy-2d", "--out", "x.ckpt"]
EVALUATE = ["evaluate", "--checkpoint", "x.ckpt"]


@pytest.mark.parametrize("base, flag, value", [
    (SAMPLE, "--seed", str(2**70)), (SAMPLE, "--seed", "-1"), (SAMPLE, "--seed", "9" * 5000),
    (SAMPLE, "--n", "0"), (SAMPLE, "--n", str(10**6)), (SAMPLE, "--n", "1e3"),
    (SAMPLE, "--n", "many"), (SAMPLE, "--steps", "0"), (SAMPLE, "--steps", str(10**9)),
    (SAMPLE, "--label", "-1"), (SAMPLE, "--label", str(2**31)),
    (SAMPLE, "--guidance", "nan"), (SAMPLE, "--guidance", "inf"), (SAMPLE, "--guidance", "-1"),
    (SAMPLE, "--guidance", "1e9"), (SAMPLE, "--eta", "2"), (SAMPLE, "--eta", "nan"),
    (SAMPLE, "--eta", "-0.5"), (SAMPLE, "--threads", str(10**6)), (SAMPLE, "--threads", "0"),
    (TRAIN, "--steps", "0"), (TRAIN, "--steps", str(10**12)), (TRAIN, "--seed", "-1"),
    (TRAIN, "--seed", str(2**40)), (TRAIN, "--threads", str(10**6)),
    (EVALUATE, "--n", "0"), (EVALUATE, "--samples", str(10**9)),
    (EVALUATE, "--batch-size", "0"), (EVALUATE, "--batch-size", str(10**7)),
    (EVALUATE, "--seed", str(2**64)),
])
def test_every_numeric_flag_is_bounded_and_named(capsys, tmp_path, monkeypatch, base, flag, value):
    monkeypatch.chdir(tmp_path)
    line = fails(capsys, [*base, flag, value])
    assert f"argument {flag}:" in line and "Overflow" not in line and len(line) < 300


def test_the_limits_come_from_core_config(capsys):
    from core.config import LIMITS

    high = LIMITS["sampling.n"][1]
    assert f"{int(high):,}" in fails(capsys, [*SAMPLE, "--n", str(int(high) + 1)])


@pytest.mark.parametrize("argv, words", [
    (["--steps", "21"], "--steps 21: the model has only 20 timesteps"),
    (["--label", "1"], "--label: this model is unconditional"),
    (["--guidance", "2"], "--guidance: this model is unconditional"),
])
def test_flags_that_do_not_fit_the_model_name_the_flag(capsys, tmp_path, toy, argv, words):
    out = tmp_path / "x.npy"
    assert words in fails(capsys, ["sample", "--checkpoint", toy["plain"], "--npy", out, *argv])
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["--label", "8"], "--label 8: the model's classes are 0 to 7"),
    (["--guidance", "2"], "--guidance needs --label"),
])
def test_labels_of_a_conditional_model(capsys, tmp_path, toy, argv, words):
    out = tmp_path / "x.npy"
    assert words in fails(capsys, ["sample", "--checkpoint", toy["labels"], "--npy", out, *argv])
    assert not out.exists()


# ------------------------------------------------------------- 6. output files
def sample_args(toy, *outputs) -> list[str]:
    return [str(a) for a in ("sample", "--checkpoint", toy["plain"], "--n", "16", "--sampler",
                             "ddim", "--steps", "4", *outputs)]


@pytest.mark.parametrize("flag, name, words", [
    ("--out", "folder.png", "is a folder"), ("--npy", "folder.npy", "is a folder"),
    ("--out", "plot.xyz", "unknown picture extension '.xyz'; use one of .png"),
    ("--out", "plot", "unknown picture extension '(none)'"),
    ("--out", "plot.npy", "unknown picture extension '.npy'"),
    ("--npy", "samples", "must end in .npy"), ("--npy", "samples.txt", "must end in .npy"),
    ("--npy", "samples.NPY", "must end in .npy"),
    ("--out", "missing/plot.png", "the folder"), ("--npy", "missing/x.npy", "does not exist"),
])
def test_bad_output_paths_are_refused_before_sampling(capsys, tmp_path, toy, monkeypatch, flag,
                                                      name, words):
    import core.generate

    monkeypatch.setattr(core.generate, "sample", lambda *a, **k: pytest.fail("sampled"))
    for folder in ("folder.png", "folder.npy"):
        (tmp_path / folder).mkdir()
    line = fails(capsys, sample_args(toy, flag, tmp_path / name))
    assert f"{flag} {tmp_path / name}" in line and words in line
    assert sorted(os.listdir(tmp_path)) == ["folder.npy", "folder.png"]
    assert not any(os.listdir(tmp_path / folder) for folder in ("folder.png", "folder.npy"))


@pytest.mark.parametrize("flag, name", [("--out", "plot.png"), ("--npy", "x.npy")])
def test_an_existing_file_is_kept_without_force(capsys, tmp_path, toy, flag, name):
    target = tmp_path / name
    target.write_bytes(b"precious")
    assert "exists; pass --force" in fails(capsys, sample_args(toy, flag, target))
    assert target.read_bytes() == b"precious"
    assert main(sample_args(toy, flag, target, "--force")) == 0
    assert target.read_bytes() != b"precious"


@pytest.mark.parametrize("flag, name", [("--out", "plot.png"), ("--npy", "x.npy")])
def test_a_symlink_is_replaced_never_written_through(capsys, tmp_path, toy, flag, name):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    link = tmp_path / name
    link.symlink_to(victim)
    assert "exists" in fails(capsys, sample_args(toy, flag, link))
    assert main(sample_args(toy, flag, link, "--force")) == 0
    assert not link.is_symlink() and victim.read_bytes() == b"do not touch"
    assert sorted(os.listdir(tmp_path)) == sorted([name, "victim.txt"])   # no temp files left


def test_a_broken_symlink_counts_as_existing(capsys, tmp_path, toy):
    link = tmp_path / "x.npy"
    link.symlink_to(tmp_path / "nowhere")
    assert "exists" in fails(capsys, sample_args(toy, "--npy", link))
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("suffix", sorted(picture_formats()))
def test_the_exact_path_is_written_and_reported(capsys, tmp_path, toy, suffix):
    npy, out = tmp_path / "samples.npy", tmp_path / f"plot{suffix}"
    assert main(sample_args(toy, "--npy", npy, "--out", out)) == 0
    err = capsys.readouterr().err
    assert f"wrote {npy} (16, 2)" in err and f"wrote {out} (640x640)" in err
    assert sorted(os.listdir(tmp_path)) == sorted([npy.name, out.name])
    assert np.load(npy).shape == (16, 2)
    with Image.open(out) as picture:
        assert picture.size == (640, 640)


def test_a_failed_write_names_the_flag_and_keeps_the_old_file(capsys, tmp_path, toy, monkeypatch):
    target = tmp_path / "x.npy"
    target.write_bytes(b"old")
    monkeypatch.setattr("core.cli.sample._save_npy", lambda path, array: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    line = fails(capsys, sample_args(toy, "--npy", target, "--force"), code=1)
    assert f"--npy {target}" in line and "No space left" in line and "unchanged" in line
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.npy"]


# ------------------------------------------------------------- 4. non-finite samples
def huge_weights(tensors):
    for key in [k for k in tensors if k.startswith("ema.") and k.endswith("weight")]:
        tensors[key] = torch.full_like(tensors[key], 3e38)      # finite, but the output is not


def test_non_finite_samples_fail_and_write_nothing(capsys, tmp_path, toy):
    bad = rewrite(toy["plain"], tmp_path / "huge.ckpt", change_tensors=huge_weights)
    out = tmp_path / "out"
    out.mkdir()
    line = fails(capsys, ["sample", "--checkpoint", bad, "--n", "8", "--npy", out / "x.npy",
                          "--out", out / "x.png"], code=1)
    assert "8 of 8 samples hold NaN or infinity" in line and "nothing was written" in line
    assert os.listdir(out) == []


def test_nan_weights_never_reach_sampling(capsys, tmp_path, toy):
    def nan(tensors):
        tensors["ema.out.2.weight"] = torch.full_like(tensors["ema.out.2.weight"], float("nan"))
    bad = rewrite(toy["plain"], tmp_path / "nan.ckpt", change_tensors=nan)
    line = fails(capsys, ["sample", "--checkpoint", bad, "--npy", tmp_path / "x.npy"])
    assert "ema.out.2.weight holds NaN" in line and str(bad) in line
    assert not (tmp_path / "x.npy").exists()


def test_resume_with_a_bad_generator_state_names_the_tensor(capsys, tmp_path, toy):
    bad = rewrite(toy["plain"], tmp_path / "rng.ckpt", change_tensors=lambda t: t.update(
        {"rng.step": t["rng.step"].float()}))
    before = bad.read_bytes()
    line = fails(capsys, ["train", "--out", bad, "--resume", "--steps", "6"])
    assert "rng.step" in line and "uint8" in line and str(bad) in line
    assert bad.read_bytes() == before


# ------------------------------------------------------------- 8. an unwritable train --out
@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(core.training, "Trainer",
                        lambda *a, **k: pytest.fail("training started before --out was checked"))


@pytest.mark.parametrize("target", ["/proc/x.ckpt", "/sys/x.ckpt"])
def test_train_out_on_a_file_system_that_refuses_files(capsys, no_training, target):
    if not os.path.isdir(os.path.dirname(target)):
        pytest.skip(f"{os.path.dirname(target)} is not here")
    line = fails(capsys, ["train", "--preset", "toy-2d", "--out", target])
    assert f"--out {target}: cannot write in the folder" in line


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EDQUOT, errno.ENOSPC])
def test_train_out_that_cannot_be_created_is_refused_at_the_start(capsys, tmp_path, monkeypatch,
                                                                  no_training, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(cli_common.tempfile, "mkstemp", refuse)
    line = fails(capsys, ["train", "--preset", "toy-2d", "--out", tmp_path / "run.ckpt"])
    assert f"--out {tmp_path / 'run.ckpt'}" in line and os.strerror(code) in line
    assert os.listdir(tmp_path) == []


def test_train_out_as_a_folder_is_refused(capsys, tmp_path, no_training):
    assert "is a folder" in fails(capsys, ["train", "--preset", "toy-2d", "--out", tmp_path])


def test_the_start_check_leaves_nothing_behind(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(train={**TOY["train"], "steps": 2}).to_dict()))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run.ckpt")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["config.json", "run.ckpt"]


# ------------------------------------------------------------- 9. the scatter plot
def dark(region: np.ndarray) -> int:
    return int((region.sum(axis=2) < 300).sum())


def test_scatter_plot_has_tick_labels_and_a_title():
    points = np.random.default_rng(0).normal(size=(300, 2))
    before = set(sys.modules)
    titled = np.asarray(scatter_plot(points, title="ddim, 50 steps, n = 300"))
    plain = np.asarray(scatter_plot(points))
    assert not {m for m in set(sys.modules) - before if m.startswith("matplotlib")}
    assert titled.shape == (640, 640, 3)
    left, top = round(640 * 0.11), round(640 * 0.07)
    assert dark(titled[:top - 2]) > 50 and dark(plain[:top - 2]) == 0        # the title
    assert dark(plain[top + 5:-80, : left - 6]) > 50                          # y tick labels
    assert dark(plain[-round(640 * 0.06):, left + 5:]) > 50                   # x tick labels
    blue = (plain[..., 2] > 150) & (plain[..., 0] < 80)
    assert blue[top:, left:].sum() > 300 and blue[:, : left - 1].sum() == 0   # dots, inside only


def test_tick_labels_follow_the_data():
    points = np.random.default_rng(0).normal(size=(300, 2))
    small = np.asarray(scatter_plot(points))
    large = np.asarray(scatter_plot(points * 1000 + 5000))
    left = round(640 * 0.11)
    assert not np.array_equal(small[:, : left - 6], large[:, : left - 6])


@pytest.mark.parametrize("low, high", [(-1.0, 1.0), (0.0, 7.3), (-0.013, 0.021), (4e3, 6e3),
                                       (-2.5e-7, 1e-7), (99.0, 101.0)])
def test_nice_ticks_are_round_and_inside(low, high):
    ticks = nice_ticks(low, high)
    assert 3 <= len(ticks) <= 11
    assert all(low - 1e-12 <= t <= high + 1e-12 for t in ticks)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6
    assert np.allclose(np.diff(ticks), step)


def test_cli_scatter_plot_carries_the_run_in_its_title(capsys, tmp_path, toy):
    out = tmp_path / "plot.png"
    assert main(sample_args(toy, "--out", out)) == 0
    with Image.open(out) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert dark(pixels[: round(640 * 0.07) - 2]) > 50
