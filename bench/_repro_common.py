"""Shared plumbing of the bench/repro_*.py reproduction scripts (bench-only: uses matplotlib).

Each script exposes `main(argv) -> dict` (the numbers it reports) so tests can run it
in-process with `--quick`; run from the repository root as `python bench/repro_X.py`.
Figures go to docs/figures/ by default, results (JSON) next to them unless --json is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(REPO_ROOT))

FIGURES_DIR = REPO_ROOT / "docs" / "figures"
MAX_FIGURE_BYTES = 200_000


def base_parser(description: str) -> argparse.ArgumentParser:
    """--quick (seconds-long smoke run), --out-dir (figures), --json (results file), --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny budgets so the script finishes in seconds (smoke test); "
                             "the numbers are meaningless")
    parser.add_argument("--out-dir", type=Path, default=FIGURES_DIR,
                        help="folder for the PNG figure(s) (default docs/figures)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the reported numbers here (default: <out-dir>/<name>.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def setup_torch(threads: int) -> None:
    """One deterministic CPU set-up for every script."""
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def hardware_line(device: str = "cpu") -> str:
    """'CPU (AMD EPYC, 2 cores visible, 1 torch thread), torch 2.13.0+cpu, Python 3.11.2'."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        card = torch.cuda.get_device_name(0)
        return f"{card}, torch {torch.__version__}, Python {platform.python_version()}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"CPU ({model}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch "
            f"thread(s)), torch {torch.__version__}, Python {platform.python_version()}")


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Save `fig` as PNG at `dpi`; retries at lower dpi if the file exceeds 200 KB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt_dpi in (dpi, int(dpi * 0.8), int(dpi * 0.65)):
        fig.savefig(path, dpi=attempt_dpi, bbox_inches="tight")
        if path.stat().st_size <= MAX_FIGURE_BYTES:
            break
    pyplot().close(fig)
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(REPO_ROOT))
        except ValueError:
            return str(value)
    return value


def write_results(results: dict, args, name: str) -> Path:
    """Dump `results` (numpy made plain) as JSON to args.json or <out-dir>/<name>.json."""
    path = args.json if args.json is not None else Path(args.out_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(results), indent=1) + "\n", encoding="utf-8")
    return path


class Stopwatch:
    """Wall time in seconds since construction (`elapsed()`)."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def mean_and_stderr(values) -> tuple[float, float]:
    """Sample mean and its standard error std(ddof=1)/sqrt(n) (stderr 0 for n = 1)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_and_stderr: no values")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


CACHE_DIR = REPO_ROOT / "runs" / "repro_cache"  # /runs/ is git-ignored


@dataclass
class TrainedRun:
    """EMA networks of one training run at increasing step counts.

    snapshots: list of (step, model in eval mode); diffusion: the run's GaussianDiffusion;
    seconds: wall time of the training itself (from the original run when cached);
    final_loss: mean training loss over the last 10 % of steps; cached: loaded from disk.
    """

    config: object
    snapshots: list
    diffusion: object
    seconds: float
    final_loss: float
    cached: bool

    @property
    def model(self):
        """The EMA network after the last snapshot step."""
        return self.snapshots[-1][1]

    @property
    def steps(self) -> int:
        return int(self.snapshots[-1][0])


# The modules that define what a trained network computes; editing any of them invalidates
# the cache (the training loop's bookkeeping in core/training.py is deliberately left out).
FINGERPRINTED = ("core/models", "core/diffusion.py", "core/schedule.py", "core/distributions.py",
                 "core/ema.py", "core/timestep_sampler.py", "core/data/toys.py")


def code_fingerprint() -> str:
    """sha1 (12 hex digits) of the source files in FINGERPRINTED."""
    digest = hashlib.sha1()
    for entry in FINGERPRINTED:
        path = REPO_ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(REPO_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def _cache_path(config, dataset, snapshot_steps) -> Path:
    key = json.dumps({"config": config.to_dict(), "data": dataset.name, "code": code_fingerprint(),
                      "shape": list(dataset.shape), "n": int(dataset.train.shape[0]),
                      "snapshots": [int(s) for s in snapshot_steps]}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return CACHE_DIR / f"{config.name}-{digest}.pt"


def train_snapshots(config, dataset, snapshot_steps, *, cache: bool = True, label: str = "",
                    progress_every: int = 0) -> TrainedRun:
    """Train `config` on `dataset` with core.training.Trainer (CPU), keeping a frozen copy of
    the EMA network after each step count in `snapshot_steps` (increasing).

    With cache=True the EMA weights and timings are stored in runs/repro_cache/ under a hash
    of (config, data set, snapshot steps, code_fingerprint()) and re-used by later runs of
    any script.
    """
    import torch

    from core.build import diffusion_from_config as build_diffusion
    from core.models import build_model
    from core.training import Trainer

    snapshot_steps = [int(s) for s in snapshot_steps]
    if not snapshot_steps or sorted(set(snapshot_steps)) != snapshot_steps or snapshot_steps[0] < 1:
        raise ValueError(f"snapshot_steps must be increasing positive integers, got {snapshot_steps}")
    path = _cache_path(config, dataset, snapshot_steps)
    diffusion = build_diffusion(config, dataset.kind)
    if cache and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        snapshots = []
        for step, state in zip(saved["steps"], saved["states"], strict=True):
            model = build_model(config.model, dataset.shape, None, learn_sigma=diffusion.learns_sigma)
            model.load_state_dict(state)
            model.requires_grad_(False)
            snapshots.append((int(step), model.eval()))
        print(f"  [{label}] loaded {path.name} (trained {saved['seconds']:.0f} s)", flush=True)
        return TrainedRun(config, snapshots, diffusion, float(saved["seconds"]),
                          float(saved["final_loss"]), True)

    trainer = Trainer(config, dataset=dataset, device="cpu")
    clock = Stopwatch()
    last_print = [0]

    def report(rows):
        if progress_every and trainer.step - last_print[0] >= progress_every:
            last_print[0] = trainer.step
            recent = trainer.history["loss"][-progress_every:]
            print(f"  [{label}] step {trainer.step} loss {np.mean(recent):.4f} "
                  f"({clock.elapsed():.0f} s)", flush=True)

    snapshots = []
    for target in snapshot_steps:
        trainer.run(target - trainer.step, on_metrics=report)
        snapshots.append((trainer.step, trainer.ema_snapshot()))
    seconds = clock.elapsed()
    losses = trainer.history["loss"]
    final_loss = float(np.mean(losses[-max(1, len(losses) // 10):]))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"steps": [s for s, _ in snapshots],
                    "states": [m.state_dict() for _, m in snapshots],
                    "seconds": seconds, "final_loss": final_loss}, path)
    return TrainedRun(config, snapshots, diffusion, seconds, final_loss, False)


TOY_STEPS = 4000
TOY_SNAPSHOTS = (250, 1000, TOY_STEPS)  # shared, so the toy scripts re-use each other's cache


def toy_config(dataset: str, variance_type: str, loss_type: str, *, timesteps: int = 1000,
               schedule: str = "cosine", steps: int = TOY_STEPS, hidden: int = 128,
               seed: int = 0):
    """The 2-D toy run of the repro scripts: the app's toy-2d preset network (MLP 128 x 3,
    batch 256, lr 2e-3) with an eps model on `schedule` with `timesteps` steps."""
    from core.config import DiffusionConfig, ExperimentConfig, ModelConfig, TrainConfig

    return ExperimentConfig(
        name=f"toy-{dataset}-{variance_type}-{loss_type}-T{timesteps}",
        model=ModelConfig(kind="mlp", hidden=hidden, mlp_blocks=3, dropout=0.0),
        diffusion=DiffusionConfig(schedule=schedule, timesteps=timesteps, mean_type="eps",
                                  variance_type=variance_type, loss_type=loss_type),
        train=TrainConfig(dataset=dataset, num_samples=20000, batch_size=256, lr=2e-3,
                          warmup_steps=100, ema_decay=0.995, steps=steps, seed=seed,
                          device="cpu", log_every=10, probe_every=0,
                          probe_timesteps=min(20, timesteps)),
    ).validate()
