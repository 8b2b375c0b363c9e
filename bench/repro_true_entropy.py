"""The exact reverse process of Gaussian-mixture toys against the bounds and a trained model.

For "8gaussians" and "grid25" (isotropic Gaussian mixtures, core.mixture) and the cosine
schedule with T = 1000, per t (all per dimension, nats):

- the Sohl-Dickstein bounds D/2 log(2 pi e beta-tilde_t) <= H(X_{t-1}|X_t) <= D/2 log(2 pi e beta_t)
  (core.entropy.entropy_bounds / D) and the corrected upper bound D/2 log(2 pi e beta_t / alpha_t);
- the true H(X_{t-1}|X_t) = H(X_t|X_{t-1}) + H(X_{t-1}) - H(X_t), where the entropy change
  H(X_{t-1}) - H(X_t) is core.mixture's MixtureReverseProcess.entropy_change: a Monte Carlo
  average over *paired* draws (the same component k and the same z give x_{t-1} =
  sqrt(abar_{t-1}) m_k + sigma_{t-1} z and x_t = sqrt(abar_t) m_k + sigma_t z) with the
  moment-matched Gaussian as a control variate. For comparison the script also reports the
  standard errors of two simpler estimators of the same change: independent draws (two
  plain Monte Carlo entropies) and plain paired draws (no control variate). The quantity of
  interest is O(beta_t), so the error matters. core's estimate is checked at a few t against
  2-D trapezoid quadrature of -int q log q (an independent float64 computation);
- the marginal entropy H(X_t) and its per-step change;
- the true E[Var q(x_{t-1}|x_t)] against beta_t and beta-tilde_t; Analytic-DPM's sigma*^2
  (Bao et al. 2022) from the exact E[eps|x_t] and from a trained model's eps predictions,
  raw and clipped to [beta-tilde_t, beta-tilde_t + c_t^2 Var(x_0)] (core.analytic_dpm;
  c_t = posterior_mean_coef1; the law of total variance gives E Var(x_0|x_t) <= Var(x_0), a
  data-variance version of Bao et al.'s Theorem 2 range bound, valid for unbounded data);
- a learned_range + L_hybrid model's Sigma_theta(t) and its entropy, at several training steps.

Why the "upper bound" can fail: it assumes H(X_t) >= H(X_{t-1}); X_t = sqrt(alpha_t) X_{t-1} +
sqrt(beta_t) eps only guarantees H(X_t) >= H(X_{t-1}) + D/2 log alpha_t, so for data whose
per-dimension variance exceeds 1 (the 8-Gaussian ring, variance 2.04) the marginal entropy
shrinks at mid/late t and H(X_{t-1}|X_t) exceeds D/2 log(2 pi e beta_t), by at most
D/2 log(1/alpha_t). The script tests this numerically and reports it.

    nice -n 10 python bench/repro_true_entropy.py   # docs/figures/true_entropy_<data>.png
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from _repro_common import (
    TOY_SNAPSHOTS,
    Stopwatch,
    base_parser,
    hardware_line,
    pyplot,
    save_figure,
    setup_torch,
    toy_config,
    train_snapshots,
    write_results,
)

from core.analytic_dpm import analytic_dpm_variance
from core.data import get_dataset
from core.entropy import entropy_bounds, gaussian_marginal_entropy
from core.mixture import McEstimate, MixtureReverseProcess, mixture_data_variance
from core.schedule import NoiseSchedule, space_timesteps

DATASETS = ("8gaussians", "grid25")


# ---------------------------------------------------------------------------------- truth
# The truth is core's MixtureReverseProcess.entropy_change (paired draws + control variate).
# The two estimators below are simpler versions of it, kept only to report how much pairing
# and the control variate each reduce the standard error.
def independent_entropy_change(process: MixtureReverseProcess, t: int, n: int,
                               rng: np.random.Generator) -> McEstimate:
    """H(X_{t-1}) - H(X_t) in nats (total over D) as two independent plain Monte Carlo
    entropies, -mean log q_s(x) over n own draws of each q_s; errors added in quadrature."""
    estimates = []
    for s in (t - 1, t):
        values = -process.marginal_log_density(process.sample_marginal(n, s, rng), s)
        estimates.append((values.mean(), values.std(ddof=1) / np.sqrt(n)))
    (h_prev, err_prev), (h_now, err_now) = estimates
    return McEstimate(np.float64(h_prev - h_now), np.float64(np.hypot(err_prev, err_now)))


def paired_entropy_change(process: MixtureReverseProcess, t: int, n: int,
                          rng: np.random.Generator) -> McEstimate:
    """H(X_{t-1}) - H(X_t) in nats (total over D) from n plain paired draws (the same k and
    z for x_{t-1} and x_t, core's sample_marginal_pair) without the control variate."""
    x_prev, x_now = process.sample_marginal_pair(n, t, rng)
    diff = process.marginal_log_density(x_now, t) - process.marginal_log_density(x_prev, t - 1)
    return McEstimate(np.float64(diff.mean()), np.float64(diff.std(ddof=1) / np.sqrt(n)))


def quadrature_entropy(process: MixtureReverseProcess, t: int, points: int = 1401,
                       width_in_std: float = 10.0) -> float:
    """H(X_t) = -int q log q (nats, total) by the trapezoid rule on a 2-D grid.

    The grid is centred at 0 and reaches `width_in_std` component standard deviations beyond
    the farthest component mean, so the truncated tails are below exp(-width^2 / 2).
    """
    if process.dim != 2:
        raise ValueError("quadrature_entropy is for 2-D mixtures")
    means, var = process.marginal_params(t)
    half_width = float(np.abs(means).max()) + width_in_std * np.sqrt(var)
    axis = np.linspace(-half_width, half_width, points)
    step = axis[1] - axis[0]
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    log_q = np.concatenate([process.marginal_log_density(chunk, t)
                            for chunk in np.array_split(grid, 20)])
    integrand = (-np.exp(log_q) * log_q).reshape(points, points)
    weights = np.ones(points)
    weights[[0, -1]] = 0.5
    return float(step * step * weights @ integrand @ weights)


def analysis_timesteps(num_timesteps: int, count: int) -> np.ndarray:
    """t = 0 and about `count` log-spaced timesteps up to T-1 (the first steps matter most)."""
    spaced = np.round(np.geomspace(1, num_timesteps, count)).astype(np.int64) - 1
    return np.unique(np.concatenate([[0, 1, 2], spaced, [num_timesteps - 1]]))


def truth_curves(mixture, schedule: NoiseSchedule, ts: np.ndarray, n: int, seed: int) -> dict:
    """Per-t truth at timesteps ts, per dimension (see module docstring)."""
    process = MixtureReverseProcess(mixture, schedule)
    rng = np.random.default_rng(seed)
    dim = process.dim
    names = ("true_variance", "true_variance_err", "entropy_change", "entropy_change_err",
             "marginal_entropy", "marginal_entropy_err", "independent_entropy_err",
             "paired_entropy_err", "eps_norm_sq")
    out = {name: np.zeros(len(ts)) for name in names}
    for i, t in enumerate(ts.tolist()):
        variance = process.expected_reverse_variance(t, n, rng)
        change = process.entropy_change(t, n, rng)   # H(X_{t-1}) - H(X_t): paired + control variate
        marginal = process.marginal_entropy(t, n, rng)
        independent = independent_entropy_change(process, t, n, rng)    # comparison only
        paired = paired_entropy_change(process, t, n, rng)              # comparison only
        out["true_variance"][i], out["true_variance_err"][i] = variance.value, variance.stderr
        out["entropy_change"][i], out["entropy_change_err"][i] = change.value / dim, change.stderr / dim
        out["marginal_entropy"][i] = marginal.value / dim
        out["marginal_entropy_err"][i] = marginal.stderr / dim
        out["independent_entropy_err"][i] = independent.stderr / dim
        out["paired_entropy_err"][i] = paired.stderr / dim
        out["eps_norm_sq"][i] = process.eps_norm_sq(t, n, rng)
    upper, lower = entropy_bounds(schedule, dim)
    out["upper"] = upper[ts] / dim
    out["lower"] = lower[ts] / dim
    out["corrected_upper"] = out["upper"] + 0.5 * np.log(1.0 / schedule.alphas[ts])
    out["true_entropy"] = out["upper"] + out["entropy_change"]   # H(X_t|X_{t-1}) = upper
    out["true_entropy_err"] = out["entropy_change_err"]
    out["analytic_exact"] = analytic_dpm_variance(schedule, out["eps_norm_sq"], ts)
    out["analytic_exact_clipped"] = analytic_dpm_variance(
        schedule, out["eps_norm_sq"], ts, data_variance=mixture_data_variance(mixture))
    out["gaussian_marginal_entropy"] = gaussian_marginal_entropy(
        schedule, process.data_mean, process.data_cov)["per_dim"][ts]
    return out


def quadrature_check(mixture, schedule: NoiseSchedule, check_ts, n: int, seed: int,
                     points: int = 1401) -> list:
    """H(X_{t-1}) - H(X_t) per dim by 2-D quadrature against core's Monte Carlo estimate
    (process.entropy_change: paired draws + control variate; keys keep the name paired_mc)."""
    process = MixtureReverseProcess(mixture, schedule)
    rng = np.random.default_rng(seed)
    rows = []
    for t in check_ts:
        exact = (quadrature_entropy(process, t - 1, points=points)
                 - quadrature_entropy(process, t, points=points)) / process.dim
        paired = process.entropy_change(t, n, rng)
        rows.append({"t": int(t), "quadrature": exact, "paired_mc": paired.value / process.dim,
                     "paired_mc_err": paired.stderr / process.dim})
    return rows


# ---------------------------------------------------------------------------------- model
@torch.no_grad()
def model_curves(diffusion, model, process: MixtureReverseProcess, ts: np.ndarray, n: int,
                 seed: int) -> dict:
    """E_{x_t ~ q}[Sigma_theta] per dim, the model's entropy E[D/2 log(2 pi e Sigma_theta)] / D
    and Gamma_t = E|eps_theta|^2 / D, at timesteps ts."""
    rng = np.random.default_rng(seed)
    learned_variance, learned_entropy, gamma = (np.zeros(len(ts)) for _ in range(3))
    for i, t in enumerate(ts.tolist()):
        x_t = torch.from_numpy(process.sample_marginal(n, t, rng)).float()
        steps = torch.full((n,), t, dtype=torch.long)
        out = diffusion.p_mean_variance(model, x_t, steps)
        eps = out["model_output"][:, : process.dim].double()
        gamma[i] = float(eps.square().sum(dim=1).mean()) / process.dim
        learned_variance[i] = float(out["variance"].double().mean())
        learned_entropy[i] = 0.5 * (np.log(2 * np.pi * np.e) + float(out["log_variance"].double().mean()))
    return {"learned_variance": learned_variance, "learned_entropy": learned_entropy,
            "eps_norm_sq": gamma}


# ---------------------------------------------------------------------------------- findings
def findings(ts: np.ndarray, truth: dict, schedule: NoiseSchedule, sigmas: float = 3.0) -> dict:
    """Where the truth leaves the Sohl-Dickstein interval or beta_t, by more than `sigmas` errors."""
    beta = schedule.betas[ts]
    gap = truth["true_entropy"] - truth["upper"]
    above_upper = gap > sigmas * truth["true_entropy_err"]
    above_corrected = truth["true_entropy"] - truth["corrected_upper"] > sigmas * truth["true_entropy_err"]
    below_lower = truth["lower"] - truth["true_entropy"] > sigmas * truth["true_entropy_err"]
    var_above_beta = truth["true_variance"] - beta > sigmas * truth["true_variance_err"]
    return {
        "t_above_upper_bound": ts[above_upper],
        "max_excess_over_upper_nats_per_dim": float(gap.max()),
        "t_of_max_excess": int(ts[int(np.argmax(gap))]),
        "excess_in_stderr_at_max": float(gap.max() / max(truth["true_entropy_err"][int(np.argmax(gap))], 1e-300)),
        "count_above_corrected_upper": int(above_corrected.sum()),
        "count_below_lower_bound": int(below_lower.sum()),
        "t_variance_above_beta": ts[var_above_beta],
        "max_variance_over_beta": float((truth["true_variance"] / beta).max()),
        # standard errors per dim of H(X_{t-1}) - H(X_t), median over t: independent draws,
        # plain paired draws, and core's paired draws + control variate (the truth's error)
        "median_independent_entropy_err": float(np.median(truth["independent_entropy_err"])),
        "median_paired_entropy_err": float(np.median(truth["paired_entropy_err"])),
        "median_paired_cv_entropy_err": float(np.median(truth["true_entropy_err"])),
    }


def closeness(ts: np.ndarray, truth: dict, models: list, analytic: dict) -> dict:
    """How far the model's variances are from the true one: mean over t >= 1 of
    |log(sigma^2 / true variance)| (the learned Sigma_theta, Analytic-DPM clipped), and the
    mean |H_learned - H_true| per dim for each training snapshot."""
    keep = ts >= 1
    true = truth["true_variance"][keep]
    final = models[-1][1]
    return {
        "learned_variance_mean_abs_log_error":
            float(np.mean(np.abs(np.log(final["learned_variance"][keep] / true)))),
        "analytic_clipped_mean_abs_log_error":
            float(np.mean(np.abs(np.log(analytic["clipped"][keep] / true)))),
        "learned_entropy_mean_abs_error_by_step": {
            str(step): float(np.mean(np.abs(curves["learned_entropy"] - truth["true_entropy"])))
            for step, curves in models},
    }


# ---------------------------------------------------------------------------------- figure
def plot(name: str, ts: np.ndarray, truth: dict, models: list, schedule: NoiseSchedule,
         analytic: dict, schedule_label: str, path):
    plt = pyplot()
    x = ts + 1  # log axis: paper step t+1
    beta, tilde = schedule.betas[ts], schedule.posterior_variance[ts]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    final_label = f"learned $\\Sigma_\\theta$ (step {models[-1][0]})"

    ax = axes[0, 0]
    ax.plot(x, truth["upper"], "k-", label=r"upper $\frac{1}{2}\log 2\pi e\beta_t$")
    ax.plot(x, truth["lower"], "k--", label=r"lower $\frac{1}{2}\log 2\pi e\tilde\beta_t$")
    ax.errorbar(x, truth["true_entropy"], yerr=truth["true_entropy_err"], fmt="o", ms=3,
                color="C3", label=r"true $H(X_{t-1}|X_t)$")
    ax.plot(x, models[-1][1]["learned_entropy"], color="C0", label=final_label)
    ax.set_title("reverse-step entropy per dim (nats)")
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    ax.plot(x, truth["lower"] - truth["upper"], "k--", label="lower bound")
    ax.plot(x, truth["corrected_upper"] - truth["upper"], "k:",
            label=r"corrected upper $+\frac{1}{2}\log(1/\alpha_t)$")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.errorbar(x, truth["true_entropy"] - truth["upper"], yerr=truth["true_entropy_err"],
                fmt="o", ms=3, color="C3", label="true")
    for i, (step, curves) in enumerate(models):
        ax.plot(x, curves["learned_entropy"] - truth["upper"], color="C0",
                alpha=0.35 + 0.65 * (i + 1) / len(models), label=f"learned, step {step}")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_title(r"entropy minus the upper bound $\frac{1}{2}\log 2\pi e\beta_t$ (symlog)")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    ax.errorbar(x, truth["marginal_entropy"], yerr=truth["marginal_entropy_err"], fmt="o-",
                ms=3, color="C2", label=r"$H(X_t)$ per dim")
    ax.plot(x, truth["gaussian_marginal_entropy"], color="C2", ls=":",
            label="Gaussian with the data's covariance")
    ax.set_ylabel("nats per dim")
    twin = ax.twinx()
    twin.errorbar(x, -truth["entropy_change"], yerr=truth["entropy_change_err"], fmt="s", ms=2,
                  color="C1", label=r"$H(X_t)-H(X_{t-1})$ (right)")
    twin.axhline(0.0, color="C1", lw=0.6)
    twin.set_yscale("symlog", linthresh=1e-4)
    ax.set_title("marginal entropy and its per-step change")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="center left")

    ax = axes[1, 1]
    ratio = {"true": truth["true_variance"] / beta - 1.0,
             "exact": truth["analytic_exact"] / beta - 1.0,
             "exact_clipped": truth["analytic_exact_clipped"] / beta - 1.0,
             "raw": analytic["raw"] / beta - 1.0, "clipped": analytic["clipped"] / beta - 1.0,
             "learned": models[-1][1]["learned_variance"] / beta - 1.0}
    ax.plot(x, tilde / beta - 1.0, "k--", label=r"$\tilde\beta_t$")
    ax.axhline(0.0, color="k", lw=1.0, label=r"$\beta_t$")
    ax.plot(x, 1.0 / schedule.alphas[ts] - 1.0, "k:", label=r"$\beta_t/\alpha_t$")
    ax.errorbar(x, ratio["true"], yerr=truth["true_variance_err"] / beta, fmt="o", ms=4,
                color="C3", label=r"true $E\,\mathrm{Var}\,q(x_{t-1}|x_t)$")
    ax.plot(x, ratio["exact"], "x", color="C4", label="Analytic-DPM, exact score (MC)")
    ax.plot(x, ratio["exact_clipped"], "+", color="C4", ms=9, label="  same, clipped")
    ax.plot(x, ratio["raw"], color="C5", lw=0.8, label="Analytic-DPM, model eps (raw)")
    ax.plot(x, ratio["clipped"], color="C6", ls="--", label="  same, clipped")
    ax.plot(x, ratio["learned"], color="C0", label=final_label)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_ylim(-1.5, 30.0)
    ax.set_title(r"reverse variance per dim: $\sigma^2/\beta_t - 1$ (symlog)")
    ax.legend(fontsize=6, loc="upper left", ncol=2)

    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.set_xlabel(f"t + 1 ({schedule_label})")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{name}: exact reverse process vs bounds and a learned-variance model "
                 f"({schedule_label})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def analyse(name: str, dataset, schedule: NoiseSchedule, diffusion, snapshots: list,
            ts: np.ndarray, args, schedule_label: str, path) -> dict:
    """Truth, model curves, Analytic-DPM variants, findings and the figure for one schedule.

    `diffusion` is the trained run's diffusion on `schedule` (respaced or not); snapshots is
    [(training step, EMA model)]."""
    clock = Stopwatch()
    truth = truth_curves(dataset.mixture, schedule, ts, args.mc, args.seed)
    variance = mixture_data_variance(dataset.mixture)
    truth_seconds = clock.elapsed()
    process = MixtureReverseProcess(dataset.mixture, schedule)
    models = [(step, model_curves(diffusion, model, process, ts, args.model_mc, args.seed + 7))
              for step, model in snapshots]
    gamma = models[-1][1]["eps_norm_sq"]
    analytic = {"raw": analytic_dpm_variance(schedule, gamma, ts),
                "clipped": analytic_dpm_variance(schedule, gamma, ts, data_variance=variance)}
    figure = plot(name, ts, truth, models, schedule, analytic, schedule_label, path)
    found = findings(ts, truth, schedule)
    found.update(closeness(ts, truth, models, analytic))
    print(f"{name} ({schedule_label}): data variance per dim {variance:.3f}; true "
          f"H(X_(t-1)|X_t) above the upper bound (> 3 stderr) at t = "
          f"{found['t_above_upper_bound'].tolist()}; max excess "
          f"{found['max_excess_over_upper_nats_per_dim']:.2e} nats/dim at t = "
          f"{found['t_of_max_excess']} ({found['excess_in_stderr_at_max']:.0f} stderr); above the "
          f"corrected bound: {found['count_above_corrected_upper']}; below the lower bound: "
          f"{found['count_below_lower_bound']}; max E Var / beta = "
          f"{found['max_variance_over_beta']:.5f}; median entropy-change stderr: independent "
          f"{found['median_independent_entropy_err']:.1e}, paired "
          f"{found['median_paired_entropy_err']:.1e}, paired + control variate (core) "
          f"{found['median_paired_cv_entropy_err']:.1e}; mean |log(sigma^2 / truth)|: learned "
          f"{found['learned_variance_mean_abs_log_error']:.4f}, Analytic-DPM clipped "
          f"{found['analytic_clipped_mean_abs_log_error']:.4f}; learned entropy error by step "
          f"{found['learned_entropy_mean_abs_error_by_step']}", flush=True)
    print(f"  figure: {figure}")
    return {"timesteps": ts, "schedule_betas": schedule.betas[ts], "truth": truth,
            "findings": found, "analytic_model_raw": analytic["raw"],
            "analytic_model_clipped": analytic["clipped"],
            "learned": {str(step): curves for step, curves in models},
            "truth_seconds": truth_seconds, "figure": figure}


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--schedule", default="cosine", help="cosine (default) or linear")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--points", type=int, default=40, help="analysed timesteps (log-spaced)")
    parser.add_argument("--mc", type=int, default=20000, help="Monte Carlo draws per t")
    parser.add_argument("--model-mc", type=int, default=4000, help="x_t draws per t for the model")
    parser.add_argument("--quadrature-t", default="300,500,700,900",
                        help="timesteps checked by 2-D quadrature ('' to skip)")
    parser.add_argument("--quadrature-points", type=int, default=1401, help="grid points per axis")
    parser.add_argument("--respaced", type=int, default=25,
                        help="also analyse the schedule respaced to this many steps (0: skip)")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args(argv)
    snapshots = list(TOY_SNAPSHOTS)
    if args.quick:
        args.timesteps, args.points, args.mc, args.model_mc = 50, 8, 500, 200
        args.quadrature_t, args.quadrature_points, snapshots = "25", 301, [2, 4]
        args.respaced = 10
    setup_torch(args.threads)
    schedule = NoiseSchedule.from_name(args.schedule, args.timesteps)
    suffix = "" if args.schedule == "cosine" else f"_{args.schedule}"
    ts = analysis_timesteps(args.timesteps, args.points)
    check_ts = [int(t) for t in args.quadrature_t.split(",") if t.strip()]
    check_ts = [t for t in check_ts if 0 < t < args.timesteps]
    results = {"hardware": hardware_line(), "schedule": args.schedule, "T": args.timesteps,
               "mc_draws": args.mc, "model_draws": args.model_mc, "datasets": {}}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        dataset = get_dataset(name, num_samples=20000, seed=args.seed)
        if dataset.mixture is None:
            parser.error(f"--datasets: {name!r} is not a Gaussian mixture")
        config = toy_config(name, "learned_range", "hybrid", timesteps=args.timesteps,
                            schedule=args.schedule, steps=snapshots[-1], seed=args.seed)
        run = train_snapshots(config, dataset, snapshots, cache=not (args.no_cache or args.quick),
                              label=f"{name} learned_range hybrid", progress_every=500)
        entry = {"data_variance_per_dim": mixture_data_variance(dataset.mixture),
                 "train_seconds": run.seconds, "train_steps": run.steps,
                 "quadrature_check": quadrature_check(dataset.mixture, schedule, check_ts, args.mc,
                                                      args.seed + 3, args.quadrature_points)}
        for row in entry["quadrature_check"]:
            print(f"  quadrature check t={row['t']}: H(X_t-1)-H(X_t) per dim "
                  f"{row['quadrature']:+.3e} (core paired MC + CV {row['paired_mc']:+.3e} +- "
                  f"{row['paired_mc_err']:.1e})")
        entry["full"] = analyse(name, dataset, schedule, run.diffusion, run.snapshots, ts, args,
                                f"{args.schedule}, T = {args.timesteps}",
                                args.out_dir / f"true_entropy_{name}{suffix}.png")
        if args.respaced:
            respaced = run.diffusion.respaced(space_timesteps(args.timesteps, str(args.respaced)))
            entry["respaced"] = analyse(
                name, dataset, respaced.schedule, respaced, run.snapshots,
                np.arange(respaced.num_timesteps), args,
                f"{args.schedule} T = {args.timesteps} respaced to {args.respaced} steps",
                args.out_dir / f"true_entropy_{name}{suffix}_{args.respaced}steps.png")
        results["datasets"][name] = entry
    results["json"] = write_results(results, args, f"true_entropy{suffix}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
