"""Improved DDPM, Figure 1: beta-tilde_t / beta_t against t/T for T = 100, 1,000, 10,000.

beta-tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) is the posterior variance of
q(x_{t-1} | x_t, x_0); the ratio is 0 at the first step (abar_{-1} = 1) and tends to 1 as
soon as 1 - abar_{t-1} is not small against beta_t. Nichol & Dhariwal's point: the two
variance extremes differ only in the first few steps, and the fraction of steps where they
differ shrinks as T grows, so the choice of Sigma matters little for sample quality but a
lot for the first VLB terms. Only core.schedule is used.

    python bench/repro_schedule_ratio.py            # docs/figures/schedule_ratio.png
"""

from __future__ import annotations

import sys

import numpy as np
from _repro_common import base_parser, pyplot, save_figure, write_results

from core.schedule import NoiseSchedule

LENGTHS = (100, 1000, 10000)
SCHEDULES = ("linear", "cosine")
THRESHOLD = 0.99


def ratio_curve(schedule_name: str, num_timesteps: int) -> tuple[np.ndarray, np.ndarray]:
    """(t/T, beta-tilde_t / beta_t), each (T,), t zero-based (t = 0 holds beta_1)."""
    schedule = NoiseSchedule.from_name(schedule_name, num_timesteps)
    position = np.arange(num_timesteps) / num_timesteps
    return position, schedule.posterior_variance / schedule.betas


def summarise(ratio: np.ndarray) -> dict:
    """How many steps have beta-tilde/beta below THRESHOLD, as a count and fraction."""
    count = int(np.count_nonzero(ratio < THRESHOLD))
    return {"steps_below": count, "fraction_below": count / ratio.size,
            "ratio_at_t1": float(ratio[1]) if ratio.size > 1 else float("nan")}


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharey=True)
    results: dict = {"threshold": THRESHOLD, "curves": {}}
    for column, name in enumerate(SCHEDULES):
        linear_ax, log_ax = axes[0, column], axes[1, column]
        for T in LENGTHS:
            position, ratio = ratio_curve(name, T)
            linear_ax.plot(position, ratio, label=f"T = {T:,}")
            # t = 0 (ratio 0) cannot sit on a log axis; the log panel starts at t = 1
            log_ax.plot(position[1:], ratio[1:], label=f"T = {T:,}")
            results["curves"][f"{name}_T{T}"] = summarise(ratio)
        linear_ax.set_title(f"{name} schedule")
        linear_ax.set_xlim(0, 1)
        log_ax.set_xscale("log")
        log_ax.set_xlabel("diffusion step t / T")
        for ax in (linear_ax, log_ax):
            ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\tilde\beta_t / \beta_t$")
    axes[0, 0].legend(loc="lower right")
    fig.suptitle(r"Improved DDPM Fig. 1: $\tilde\beta_t/\beta_t$ (top: linear t/T as in the paper; "
                 "bottom: log t/T from t = 1)", fontsize=10)
    fig.tight_layout()
    figure = save_figure(fig, args.out_dir / "schedule_ratio.png")
    results["figure"] = figure
    results["json"] = write_results(results, args, "schedule_ratio")
    for key, row in results["curves"].items():
        print(f"{key:14s} steps with ratio < {THRESHOLD}: {row['steps_below']:4d} "
              f"({100 * row['fraction_below']:.2f} % of T), ratio at t=1: {row['ratio_at_t1']:.3f}")
    print(f"figure: {figure}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
