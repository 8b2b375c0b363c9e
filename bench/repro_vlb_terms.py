"""Improved DDPM, Figure 2: the terms of the variational bound against t for trained models.

L_0 = -log p(x_0 | x_1) (discretized Gaussian decoder) and L_t = KL(q(x_{t-1}|x_t, x_0) ||
p(x_{t-1}|x_t)), all in bits/dim, averaged over test images, from calc_bpd_loop's `vb`
columns. Nichol & Dhariwal's observation: the first few terms carry most of the NLL, so
a uniform t in L_vlb wastes most samples on terms that barely matter (hence importance
sampling). Plotted on a log y axis, with the cumulative share of the bound held by the
first k terms.

By default the curves come from bench/repro_nll_comparison.py's results (its three MNIST
runs, calc_bpd_loop on --full-images test digits), so nothing is retrained:

    python bench/repro_vlb_terms.py                       # reads docs/figures/nll_comparison.json
    python bench/repro_vlb_terms.py --train --dataset digits   # trains its own small model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from _repro_common import (
    FIGURES_DIR,
    base_parser,
    hardware_line,
    pyplot,
    save_figure,
    setup_torch,
    train_snapshots,
    write_results,
)

from core.config import DiffusionConfig, ExperimentConfig, ModelConfig, TrainConfig
from core.data import get_dataset


def share_of_first_terms(vb_mean: np.ndarray, counts=(1, 10, 100)) -> dict:
    """Fraction of sum_t L_t held by the first k terms, for each k in counts."""
    total = float(vb_mean.sum())
    return {f"first_{k}": float(vb_mean[:k].sum() / total) for k in counts if k <= vb_mean.size}


def curves_from_results(path: Path) -> dict:
    """{run name: (vb_mean (T,), vb_stderr (T,), images)} from repro_nll_comparison.py's JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SystemExit(f"{path}: cannot read the NLL comparison results ({error.strerror}); "
                         "run bench/repro_nll_comparison.py first or pass --train") from None
    runs = data.get("runs") or {}
    if not runs:
        raise SystemExit(f"{path}: no 'runs' in the results file")
    return {name: (np.asarray(run["vb_mean"], dtype=np.float64),
                   np.asarray(run["vb_stderr"], dtype=np.float64), int(run["full_loop_images"]))
            for name, run in runs.items()}


def curves_from_training(args) -> dict:
    """Train one cosine / learned_range / L_hybrid model and run calc_bpd_loop on test images."""
    dataset = get_dataset(args.dataset, image_size=args.image_size)
    config = ExperimentConfig(
        name=f"vlb-terms-{args.dataset}",
        model=ModelConfig(kind="unet", channels=args.channels, channel_mult=(1, 2, 2),
                          num_res_blocks=1, dropout=0.0),
        diffusion=DiffusionConfig(schedule="cosine", timesteps=args.timesteps, mean_type="eps",
                                  variance_type="learned_range", loss_type="hybrid"),
        train=TrainConfig(dataset=args.dataset, image_size=args.image_size, batch_size=args.batch_size,
                          lr=5e-4, warmup_steps=100, steps=args.steps, seed=args.seed, device="cpu",
                          log_every=10, probe_every=0, probe_timesteps=min(20, args.timesteps)),
    ).validate()
    run = train_snapshots(config, dataset, [args.steps], cache=not args.quick,
                          label=config.name, progress_every=100)
    test = dataset.test[: args.images]
    loop = run.diffusion.calc_bpd_loop(run.model, test, generator=torch.Generator().manual_seed(args.seed))
    vb = loop["vb"].double()
    name = f"cosine, learned Sigma, L_hybrid ({args.dataset}, {args.steps} steps)"
    return {name: (vb.mean(0).numpy(), (vb.std(0) / max(1, vb.shape[0]) ** 0.5).numpy(),
                   int(vb.shape[0]))}


def plot(curves: dict, path: Path, title: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (name, (mean, stderr, images)) in enumerate(curves.items()):
        t = np.arange(mean.size)
        color = f"C{i}"
        axes[0].plot(t, mean, color=color, lw=0.8, label=f"{name} ({images} images)")
        axes[0].fill_between(t, np.maximum(mean - stderr, 1e-8), mean + stderr, color=color, alpha=0.2)
        share = np.cumsum(mean) / mean.sum()
        axes[1].plot(t + 1, share, color=color, label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("diffusion step t")
    axes[0].set_ylabel("VLB term L_t (bits/dim)")
    axes[0].set_title("terms of the VLB (t = 0: decoder NLL)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("k (first k terms, t < k)")
    axes[1].set_ylabel(r"$\sum_{t<k} L_t / \sum_t L_t$")
    axes[1].set_title("cumulative share of the bound (prior excluded)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=FIGURES_DIR / "nll_comparison.json",
                        help="repro_nll_comparison.py's JSON (default docs/figures/nll_comparison.json)")
    parser.add_argument("--train", action="store_true", help="train a model here instead")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--images", type=int, default=64, help="test images in calc_bpd_loop")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.steps, args.timesteps, args.images, args.channels = True, 3, 20, 4, 8
        args.batch_size = 8
    setup_torch(args.threads)
    if args.train:
        curves = curves_from_training(args)
        source = f"trained here: {args.dataset}, {args.steps} steps"
    else:
        curves = curves_from_results(args.results)
        source = f"from {args.results.name}"
    results = {"hardware": hardware_line(), "source": source, "runs": {}}
    for name, (mean, _, images) in curves.items():
        results["runs"][name] = {"images": images, "total_bits_per_dim": float(mean.sum()),
                                 "decoder_L0": float(mean[0]), **share_of_first_terms(mean)}
        row = results["runs"][name]
        print(f"{name}: sum of terms {row['total_bits_per_dim']:.3f} bits/dim, L_0 {row['decoder_L0']:.3f};"
              f" share of the first 1/10/100 terms: {row.get('first_1', float('nan')):.2f} / "
              f"{row.get('first_10', float('nan')):.2f} / {row.get('first_100', float('nan')):.2f}")
    title = f"Improved DDPM Fig. 2: VLB terms against t ({source})"
    results["figure"] = plot(curves, args.out_dir / "vlb_terms.png", title)
    results["json"] = write_results(results, args, "vlb_terms")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
