"""`python -m core`: train -> sample -> evaluate end to end, resume, Ctrl-C, and bad input."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.checkpoint import load_checkpoint
from core.cli import image_grid, main, scatter_plot

ROOT = Path(__file__).resolve().parent.parent

TOY = {
    "name": "tiny-toy",
    "model": {"kind": "mlp", "hidden": 16, "mlp_blocks": 1},
    "diffusion": {"schedule": "linear", "timesteps": 10},
    "train": {"dataset": "8gaussians", "num_samples": 400, "batch_size": 32, "steps": 20,
              "device": "cpu", "log_every": 5, "probe_every": 10, "probe_timesteps": 4,
              "warmup_steps": 2},
}
DIGITS = {
    "name": "tiny-digits",
    "model": {"kind": "unet", "channels": 8, "channel_mult": [1], "num_res_blocks": 1,
              "attention_resolutions": []},
    "diffusion": {"schedule": "cosine", "timesteps": 6, "variance_type": "learned_range",
                  "loss_type": "hybrid"},
    "train": {"dataset": "digits", "image_size": 8, "class_conditional": True, "batch_size": 16,
              "steps": 3, "device": "cpu", "log_every": 1, "probe_every": 0, "probe_timesteps": 3},
}


def run_cli(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def write_config(tmp_path, config, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def assert_clean_failure(result, code=2, words=()):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ")
    for word in words:
        assert word in lines[-1]


def test_toy_train_sample_evaluate_and_resume(tmp_path, capsys):
    ckpt = tmp_path / "toy.ckpt"
    train = run_cli("train", "--config", write_config(tmp_path, TOY), "--out", ckpt)
    assert train.returncode == 0, train.stderr
    assert "samples/s" in train.stderr and "ETA" in train.stderr
    assert load_checkpoint(ckpt).step == 20

    png, npy = tmp_path / "toy.png", tmp_path / "toy.npy"
    smp = run_cli("sample", "--checkpoint", ckpt, "--n", 50, "--sampler", "ddim", "--steps", 5,
                  "--seed", 3, "--out", png, "--npy", npy, "--device", "cpu")
    assert smp.returncode == 0, smp.stderr
    samples = np.load(npy)
    assert samples.shape == (50, 2) and samples.dtype == np.float32
    analytic = tmp_path / "analytic.npy"
    ana = run_cli("sample", "--checkpoint", ckpt, "--n", 50, "--steps", 5, "--seed", 3,
                  "--variance", "analytic", "--npy", analytic, "--device", "cpu")
    assert ana.returncode == 0, ana.stderr
    plain = tmp_path / "plain.npy"
    assert run_cli("sample", "--checkpoint", ckpt, "--n", 50, "--steps", 5, "--seed", 3,
                   "--npy", plain, "--device", "cpu").returncode == 0
    assert np.load(analytic).shape == (50, 2)
    assert not np.allclose(np.load(analytic), np.load(plain))   # other step variances
    assert_clean_failure(run_cli("sample", "--checkpoint", ckpt, "--sampler", "dpmpp_2m",
                                 "--variance", "analytic", "--npy", plain), words=["--variance"])
    with Image.open(png) as picture:
        assert picture.size == (640, 640)

    ev = run_cli("evaluate", "--checkpoint", ckpt, "--n", 20, "--samples", 200, "--device", "cpu")
    assert ev.returncode == 0, ev.stderr
    report = json.loads(ev.stdout)
    assert report["step"] == 20 and report["dataset"] == "8gaussians" and report["n"] == 20
    for key in ("nats_per_dim", "samples_log_likelihood", "data_log_likelihood", "log_likelihood_gap",
                "samples_log_likelihood_median", "data_log_likelihood_median"):
        assert isinstance(report[key], float)
    assert 0.0 <= report["samples_outlier_share"] <= 1.0
    assert report["variance"] == "model"
    ev2 = run_cli("evaluate", "--checkpoint", ckpt, "--n", 20, "--samples", 200, "--device", "cpu",
                  "--variance", "analytic")
    assert ev2.returncode == 0, ev2.stderr
    analytic_report = json.loads(ev2.stdout)
    assert analytic_report["variance"] == "analytic"
    assert isinstance(analytic_report["nats_per_dim"], float)
    assert analytic_report["nats_per_dim"] != report["nats_per_dim"]   # other step variances

    # the rest in-process (the same main()), to keep the suite quick
    capsys.readouterr()
    assert main(["train", "--config", str(write_config(tmp_path, TOY)), "--out", str(ckpt)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["train", "--out", str(ckpt), "--resume", "--steps", "30"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert load_checkpoint(ckpt).step == 30


def test_digits_train_and_guided_sample_grid(tmp_path, capsys):
    """In-process (the same main() as `python -m core`), to keep the suite quick."""
    ckpt = tmp_path / "digits.ckpt"
    assert main(["train", "--config", str(write_config(tmp_path, DIGITS)), "--out", str(ckpt)]) == 0
    png, npy = tmp_path / "grid.png", tmp_path / "grid.npy"
    assert main(["sample", "--checkpoint", str(ckpt), "--n", "6", "--sampler", "ddim", "--steps",
                 "3", "--guidance", "2", "--label", "7", "--out", str(png), "--npy", str(npy),
                 "--device", "cpu"]) == 0
    assert np.load(npy).shape == (6, 1, 8, 8)
    with Image.open(png) as picture:
        assert picture.mode == "L"
        assert picture.size == (3 * (56 + 2) + 2, 2 * (56 + 2) + 2)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(ckpt), "--n", "4", "--batch-size", "2",
                 "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "image" and report["bits_per_dim"] > 0 and "samples_log_likelihood" not in report


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130(tmp_path):
    config = dict(TOY, train={**TOY["train"], "steps": 10**6, "log_every": 1})
    ckpt = tmp_path / "stopped.ckpt"
    process = subprocess.Popen([sys.executable, "-m", "core", "train", "--config",
                                str(write_config(tmp_path, config)), "--out", str(ckpt)],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:           # wait for the first progress line
            if "samples/s" in line:
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, rest
    assert "Traceback" not in rest and "--resume" in rest
    assert load_checkpoint(ckpt).step > 0


def test_help_of_each_command(capsys):
    assert main(["--help"]) == 0 and "train" in capsys.readouterr().out
    for command, option in (("train", "--resume"), ("sample", "--guidance"), ("evaluate", "--n")):
        assert main([command, "--help"]) == 0
        assert option in capsys.readouterr().out


def test_bad_arguments_in_a_subprocess_print_one_line():
    assert_clean_failure(run_cli("sample", "--checkpoint", "/nonexistent/x.ckpt", "--npy", "x.npy"),
                         2, ["does not exist"])


@pytest.mark.parametrize("argv, words", [
    (["train", "--preset", "nope", "--out", "{tmp}/a.ckpt"], ["unknown preset", "toy-2d"]),
    (["train", "--config", "{tmp}/missing.json", "--out", "{tmp}/a.ckpt"], ["cannot be read"]),
    (["train", "--config", "{tmp}/bad.json", "--out", "{tmp}/a.ckpt"], ["train.batch_size"]),
    (["train", "--preset", "toy-2d", "--steps", "0", "--out", "{tmp}/a.ckpt"], ["--steps"]),
    (["train", "--preset", "toy-2d", "--out", "{tmp}/no/such/dir/a.ckpt"], ["does not exist"]),
    (["train", "--preset", "toy-2d", "--config", "x.json", "--out", "{tmp}/a.ckpt"], ["not allowed"]),
    (["train", "--preset", "toy-2d", "--device", "quantum", "--out", "{tmp}/a.ckpt"], ["train.device"]),
    (["train", "--out", "{tmp}/a.ckpt"], ["--preset"]),
    (["sample", "--checkpoint", "{tmp}/corrupt.ckpt", "--npy", "{tmp}/x.npy"], ["corrupt.ckpt"]),
    (["sample", "--checkpoint", "{tmp}/corrupt.ckpt"], ["--out", "--npy"]),
    (["sample", "--checkpoint", "{tmp}/x.ckpt", "--n", "0", "--npy", "{tmp}/x.npy"], ["--n"]),
    (["sample", "--checkpoint", "{tmp}/x.ckpt", "--sampler", "warp-drive"], ["invalid choice"]),
    (["sample", "--checkpoint", "{tmp}/x.ckpt", "--n", "many"], ["invalid int"]),
    (["evaluate", "--checkpoint", "{tmp}/corrupt.ckpt"], ["truncated or corrupt"]),
    (["evaluate"], ["--checkpoint"]),
])
def test_bad_input_gives_exit_2_and_one_error_line(tmp_path, capsys, argv, words):
    (tmp_path / "bad.json").write_text(json.dumps({"train": {"batch_size": 0}}))
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x00" * 64)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0]


def test_sampling_an_unconditional_model_with_a_label_is_an_error(tmp_path, capsys):
    ckpt = tmp_path / "toy.ckpt"
    config = dict(TOY, train={**TOY["train"], "steps": 2})
    assert main(["train", "--config", str(write_config(tmp_path, config)), "--out", str(ckpt)]) == 0
    capsys.readouterr()
    code = main(["sample", "--checkpoint", str(ckpt), "--label", "1", "--npy", str(tmp_path / "x.npy")])
    assert code == 2 and "unconditional" in capsys.readouterr().err


def test_image_grid_and_scatter_plot_pictures():
    images = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    images[2] = 255
    grid = image_grid(images, min_tile=16, padding=1)
    assert grid.mode == "RGB" and grid.size == (3 * 17 + 1, 2 * 17 + 1)
    pixels = np.asarray(grid)
    assert pixels[1 + 8, 1 + 2 * 17 + 8].tolist() == [255, 255, 255]      # tile 2 is white
    assert pixels[1 + 8, 1 + 8].tolist() == [0, 0, 0]                       # tile 0 is black
    points = np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    plot = np.asarray(scatter_plot(points, size=100))
    assert plot.shape == (100, 100, 3)
    assert (plot.sum(axis=2) < 600).sum() > 10                              # dots were drawn


def test_train_writes_a_checkpoint_every_checkpoint_every_steps(tmp_path, monkeypatch):
    import core.checkpoint

    saved = []
    real_save = core.checkpoint.save_checkpoint
    monkeypatch.setattr(core.checkpoint, "save_checkpoint",
                        lambda path, trainer: (saved.append(trainer.step), real_save(path, trainer)))
    config = dict(TOY, train={**TOY["train"], "steps": 12, "checkpoint_every": 5})
    ckpt = tmp_path / "periodic.ckpt"
    assert main(["train", "--config", str(write_config(tmp_path, config)), "--out", str(ckpt)]) == 0
    assert saved == [5, 10, 12]
    assert load_checkpoint(ckpt).step == 12


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   MemoryError()])
def test_out_of_memory_exits_1_with_a_hint(monkeypatch, capsys, tmp_path, error):
    import core.cli.train as cli_train

    def explode(args):
        raise error
    monkeypatch.setattr(cli_train, "run", explode)
    code = main(["train", "--preset", "toy-2d", "--out", str(tmp_path / "x.ckpt")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: out of memory")
    assert "batch_size" in lines[1]


def test_other_runtime_errors_exit_1_without_a_hint(monkeypatch, capsys, tmp_path):
    import core.cli.train as cli_train

    def explode(args):
        raise RuntimeError("expected scalar type Float")
    monkeypatch.setattr(cli_train, "run", explode)
    assert main(["train", "--preset", "toy-2d", "--out", str(tmp_path / "x.ckpt")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
