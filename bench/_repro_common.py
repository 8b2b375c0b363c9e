"""Shared plumbing of the bench/repro_*.py reproduction scripts (bench-only: uses matplotlib).

Each script exposes `main(argv) -> dict` (the numbers it reports) so tests can run it
in-process with `--quick`; run from the repository root as `python bench/repro_X.py`.
Figures go to docs/figures/ by default, results (JSON) next to them unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
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


def train_model(config, dataset, steps: int, progress_every: int = 0, label: str = ""):
    """Train with core.training.Trainer for `steps` steps on CPU; returns (trainer, seconds).

    progress_every > 0 prints the mean loss of the last `progress_every` steps.
    """
    from core.training import Trainer

    trainer = Trainer(config, dataset=dataset, device="cpu")
    clock = Stopwatch()

    def report(rows):
        if progress_every and trainer.step % progress_every < len(rows):
            recent = trainer.history["loss"][-progress_every:]
            print(f"  [{label}] step {trainer.step}/{steps} loss {np.mean(recent):.4f} "
                  f"({clock.elapsed():.0f} s)", flush=True)

    trainer.run(steps, on_metrics=report)
    return trainer, clock.elapsed()
