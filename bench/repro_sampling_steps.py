"""Sampling with fewer steps (improved DDPM section 4) on a 2-D toy with an exact density.

Two eps models of "8gaussians" (linear schedule, T = 1000, the app's toy MLP, same budget):
an L_simple model (sampled with fixed beta-tilde or fixed beta) and an L_hybrid model with
learned_range variance. For K in 1000, 500, 250, 100, 50, 25 sampling steps (timesteps
respaced evenly, improved DDPM's respacing: new betas from the kept alpha-bars) it draws N
samples with core.generate.sample and reports:

- mean log p_true(x) of the samples (nats per sample, exact mixture density) with its
  standard error, next to the test data's own mean log p (a perfect sampler matches it;
  note it rewards over-concentration, so read it with the next numbers);
- the outlier rate: the fraction of samples with log p_true below the data's 1 % quantile
  (1 % for a perfect sampler), and the diverged rate: samples with a coordinate beyond
  +-DIVERGED (the data lie within about +-3), whose log p would swamp any mean;
- for the three ancestral (DDPM) variants also the test NLL bound of the respaced model,
  calc_bpd_loop on test points (nats per dimension; a continuous density, so it can be
  negative).

Why linear and not cosine: without x0 clipping (continuous data are not clipped) the cosine
schedule's last step (beta = 0.999, abar_{T-1} ~ 2e-9) multiplies the eps error at t = T-1
by 1/sqrt(alpha) ~ 32 in the posterior mean, and a few samples start far outside the data
and never come back (--schedule cosine shows it; see docs/REPRODUCTION.md). --clip-box
clamps the x0 estimate of every sampler to the training data's box
(core.training.data_box, as the app and CLI do by default) and writes its outputs with a
"_clipbox" suffix; the NLL bound does not use the clamp, so it is the same either way.

--analytic adds Analytic-DPM (Bao et al. 2022) as further DDPM variants: the same two models
sampled with the clipped optimal variance sigma*^2, Gamma_t estimated with the network on a
sample of the training data (core.analytic_dpm.gamma_sample) at every step of the respaced
schedule (core.generate.sample(analytic_data=...)); the NLL bound then uses that sigma*^2
too (core.analytic_dpm.analytic_diffusion, same data sample and seed as the sampler, checked
against the variance the sampler recorded). Outputs get an "_analytic" suffix.

Paper's direction: with fewer steps fixed beta-tilde degrades first, fixed beta less, the
learned variance least; DDIM is best at very few (< 50) steps. Analytic-DPM: better
few-step likelihood and samples than either fixed variance, without retraining.

    nice -n 10 python bench/repro_sampling_steps.py   # docs/figures/sampling_steps.png
    nice -n 10 python bench/repro_sampling_steps.py --schedule cosine --clip-box
        # docs/figures/sampling_steps_cosine_clipbox.png
    nice -n 10 python bench/repro_sampling_steps.py --analytic --step-counts 1000,100,25 \
        --nll-points 500    # docs/figures/sampling_steps_analytic.png
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from _repro_common import (
    TOY_SNAPSHOTS,
    Stopwatch,
    base_parser,
    hardware_line,
    mean_and_stderr,
    pyplot,
    save_figure,
    setup_torch,
    toy_config,
    train_snapshots,
    write_results,
)

from core.analytic_dpm import analytic_diffusion, gamma_sample
from core.data import get_dataset
from core.diffusion import GaussianDiffusion
from core.generate import sample
from core.schedule import space_timesteps
from core.training import data_box

STEP_COUNTS = (1000, 500, 250, 100, 50, 25)
# name -> (trained model, variance used for sampling, sampler)
VARIANTS = {
    "DDPM, fixed beta-tilde (L_simple)": ("simple", "fixed_small", "ddpm"),
    "DDPM, fixed beta (L_simple)": ("simple", "fixed_large", "ddpm"),
    "DDPM, learned Sigma (L_hybrid)": ("hybrid", "learned_range", "ddpm"),
    "DDIM eta=0 (L_simple)": ("simple", "fixed_small", "ddim"),
    "DDIM eta=0 (L_hybrid)": ("hybrid", "learned_range", "ddim"),
}
# added by --analytic: "analytic" = Analytic-DPM's sigma*^2 instead of the model's variance
ANALYTIC_VARIANTS = {
    "DDPM, Analytic-DPM sigma*^2 (L_simple)": ("simple", "analytic", "ddpm"),
    "DDPM, Analytic-DPM sigma*^2 (L_hybrid)": ("hybrid", "analytic", "ddpm"),
}
ALL_VARIANTS = {**VARIANTS, **ANALYTIC_VARIANTS}
STYLES = {"ddpm": "-", "ddim": "--"}
DIVERGED = 6.0


def with_variance(diffusion: GaussianDiffusion, var_type: str) -> GaussianDiffusion:
    """The same diffusion with another reverse variance (fixed_small <-> fixed_large)."""
    return GaussianDiffusion(diffusion.schedule, diffusion.mean_type, var_type,
                             diffusion.loss_type, diffusion.lambda_vlb, diffusion.data_kind)


def sample_quality(samples: np.ndarray, dataset, data_log_p: np.ndarray) -> dict:
    """Mean log p_true of the samples (+ stderr), the same over non-diverged samples, the
    rate below the data's 1 % quantile of log p, and the diverged rate (|x_i| > DIVERGED)."""
    log_p = dataset.log_density(samples.astype(np.float64))
    kept = np.all(np.abs(samples) <= DIVERGED, axis=1)
    mean, stderr = mean_and_stderr(log_p)
    kept_mean, kept_stderr = mean_and_stderr(log_p[kept]) if kept.any() else (float("nan"),) * 2
    threshold = np.quantile(data_log_p, 0.01)
    return {"mean_log_p": mean, "mean_log_p_stderr": stderr,
            "mean_log_p_kept": kept_mean, "mean_log_p_kept_stderr": kept_stderr,
            "outlier_rate": float(np.mean(log_p < threshold)),
            "diverged_rate": float(np.mean(~kept))}


def nll_bound(diffusion: GaussianDiffusion, model, test: torch.Tensor, steps: int, seed: int) -> dict:
    """Test NLL bound (nats/dim) of the diffusion respaced to `steps` steps."""
    T = diffusion.num_timesteps
    respaced = diffusion if steps == T else diffusion.respaced(space_timesteps(T, str(steps)))
    loop = respaced.calc_bpd_loop(model, test, generator=torch.Generator().manual_seed(seed))
    mean, stderr = mean_and_stderr(loop["total_bpd"].double().numpy() * math.log(2.0))
    return {"nll_nats_per_dim": mean, "nll_stderr": stderr}


def analytic_nll_bound(diffusion: GaussianDiffusion, model, test: torch.Tensor, steps: int,
                       gamma_data: torch.Tensor, gamma_seed: int, seed: int) -> tuple[dict, np.ndarray]:
    """(test NLL bound (nats/dim) of the diffusion respaced to `steps` steps with
    Analytic-DPM's sigma*^2, that sigma*^2 (steps,)). Gamma_t is estimated on gamma_data with
    gamma_seed, as core.generate.sample(analytic_data=gamma_data, seed=gamma_seed) does."""
    T = diffusion.num_timesteps
    respaced = diffusion if steps == T else diffusion.respaced(space_timesteps(T, str(steps)))
    data = gamma_data.float()
    data_variance = float(data.reshape(data.shape[0], -1).double().var(dim=0).mean())
    analytic, sigma2 = analytic_diffusion(model, respaced, data, data_variance, seed=gamma_seed)
    loop = analytic.calc_bpd_loop(model, test, generator=torch.Generator().manual_seed(seed))
    mean, stderr = mean_and_stderr(loop["total_bpd"].double().numpy() * math.log(2.0))
    return {"nll_nats_per_dim": mean, "nll_stderr": stderr}, sigma2


def plot(results: dict, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, (name, rows) in enumerate(results["variants"].items()):
        steps = [r["steps"] for r in rows]
        style = ":" if ALL_VARIANTS[name][1] == "analytic" else STYLES[ALL_VARIANTS[name][2]]
        color = f"C{i}"
        kept = [r["mean_log_p_kept"] for r in rows]
        if np.isfinite(kept).any():  # all samples diverged: nothing to show
            axes[0].errorbar(steps, kept, yerr=[r["mean_log_p_kept_stderr"] for r in rows],
                             ls=style, marker="o", ms=3, color=color, label=name)
        axes[1].plot(steps, [100 * r["outlier_rate"] for r in rows], ls=style, marker="o", ms=3,
                     color=color, label=name)
        if "nll_nats_per_dim" in rows[0]:
            axes[2].errorbar(steps, [r["nll_nats_per_dim"] for r in rows],
                             yerr=[r["nll_stderr"] for r in rows], ls=style, marker="o", ms=3,
                             color=color, label=name)
    axes[0].axhline(results["data_mean_log_p"], color="k", lw=0.8, label="test data")
    axes[1].axhline(1.0, color="k", lw=0.8, label="test data (1 % by definition)")
    axes[0].set_title(r"mean $\log p_{true}$ of samples (nats; diverged excluded)")
    axes[1].set_title(r"% samples below the data's 1 % quantile of $\log p$")
    axes[1].set_yscale("log")
    axes[2].set_title("test NLL bound of the respaced model (nats/dim, symlog)")
    axes[2].set_yscale("symlog", linthresh=1.0)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    clamp = ", x0 clamped to the data box" if results.get("clip_box") else ""
    if results.get("analytic"):
        clamp += "; dotted: Analytic-DPM"
    fig.suptitle(f"{results['dataset']}: fewer sampling steps ({results['schedule']}, T = {results['T']}, "
                 f"{results['train_steps']} training steps per model{clamp})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="8gaussians")
    parser.add_argument("--schedule", default="linear", help="linear (default) or cosine")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--step-counts", default=",".join(map(str, STEP_COUNTS)))
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--nll-points", type=int, default=2000, help="test points for the NLL bound")
    parser.add_argument("--clip-box", action="store_true",
                        help="clamp the x0 estimates of every sampler to the training data's box "
                             "(core.training.data_box); outputs get a '_clipbox' suffix")
    parser.add_argument("--analytic", action="store_true",
                        help="also sample both models with Analytic-DPM's sigma*^2 (DDPM, with its "
                             "NLL bound); outputs get an '_analytic' suffix")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw the figure from this script's saved JSON results")
    args = parser.parse_args(argv)
    if args.replot is not None:
        results = json.loads(args.replot.read_text(encoding="utf-8"))
        figure = plot(results, args.out_dir / Path(results["figure"]).name)
        print(f"figure: {figure}")
        return results
    snapshots = list(TOY_SNAPSHOTS)
    if args.quick:
        args.timesteps, args.step_counts, args.samples, args.nll_points = 20, "20,10,5", 200, 100
        snapshots = [2, 4]
    setup_torch(args.threads)
    step_counts = sorted({int(s) for s in args.step_counts.split(",")}, reverse=True)
    if step_counts[0] > args.timesteps or step_counts[-1] < 1:
        parser.error(f"--step-counts must lie in [1, {args.timesteps}]")

    dataset = get_dataset(args.dataset, num_samples=20000, seed=args.seed)
    if dataset.log_density is None:
        parser.error(f"--dataset {args.dataset!r} has no closed-form density")
    data_log_p = dataset.log_density(dataset.test.double().numpy())
    runs = {}
    for kind, variance, loss in (("simple", "fixed_small", "simple"),
                                 ("hybrid", "learned_range", "hybrid")):
        config = toy_config(args.dataset, variance, loss, timesteps=args.timesteps,
                            schedule=args.schedule, steps=snapshots[-1], seed=args.seed)
        runs[kind] = train_snapshots(config, dataset, snapshots,
                                     cache=not (args.no_cache or args.quick),
                                     label=f"{args.dataset} {variance} {loss}", progress_every=1000)
    test = dataset.test[: args.nll_points]
    box = data_box(dataset.train) if args.clip_box else None  # None: no clamp (vectors)
    results = {"hardware": hardware_line(), "dataset": args.dataset, "T": args.timesteps,
               "schedule": args.schedule, "clip_box": bool(args.clip_box), "data_box": box,
               "analytic": bool(args.analytic), "nll_points": int(test.shape[0]),
               "train_steps": runs["simple"].steps,
               "train_seconds": {k: r.seconds for k, r in runs.items()},
               "data_mean_log_p": float(np.mean(data_log_p)), "samples": args.samples,
               "variants": {}}
    variants = ALL_VARIANTS if args.analytic else VARIANTS
    gamma_data = gamma_sample(dataset.train, seed=args.seed) if args.analytic else None
    if args.analytic:
        results["analytic_gamma_examples"] = int(gamma_data.shape[0])
    clock = Stopwatch()
    for name, (kind, variance, sampler) in variants.items():
        run = runs[kind]
        analytic = variance == "analytic"
        diffusion = run.diffusion if analytic else with_variance(run.diffusion, variance)
        rows = []
        for steps in step_counts:
            variant_clock = Stopwatch()
            trajectory = sample(run.model, diffusion, args.samples, tuple(dataset.shape),
                                sampler=sampler, steps=steps, eta=0.0, seed=args.seed + steps,
                                record_every=1 if analytic else 10**9, data_box=box,
                                analytic_data=gamma_data if analytic else None)
            row = {"steps": steps, **sample_quality(trajectory.final, dataset, data_log_p)}
            if analytic:
                nll, sigma2 = analytic_nll_bound(run.diffusion, run.model, test, steps, gamma_data,
                                                 args.seed + steps, args.seed + 1)
                row.update(nll)
                # the sampler's variance per step (t = K-1 .. 1; none added at t = 0) must be
                # the sigma*^2 the NLL bound used
                recorded = trajectory.variance[1:-1][::-1]
                if not np.allclose(recorded, sigma2[1:], rtol=1e-4, atol=0.0):
                    raise RuntimeError(f"{name}, {steps} steps: sampler and NLL bound use "
                                       f"different sigma*^2")
                respaced = (run.diffusion if steps == run.diffusion.num_timesteps else
                            run.diffusion.respaced(space_timesteps(run.diffusion.num_timesteps,
                                                                   str(steps))))
                row["sigma2_over_beta_last"] = [float(v) for v in
                                                (sigma2 / respaced.schedule.betas)[:4]]
                row["sigma2_over_beta_tilde_last"] = [
                    float(v) for v in sigma2[1:4] / respaced.schedule.posterior_variance[1:4]]
            elif sampler == "ddpm":
                row.update(nll_bound(diffusion, run.model, test, steps, args.seed + 1))
            row["seconds"] = variant_clock.elapsed()
            rows.append(row)
            print(f"{name:36s} {steps:5d} steps: mean log p {row['mean_log_p']:+.3f} +- "
                  f"{row['mean_log_p_stderr']:.3f} (non-diverged {row['mean_log_p_kept']:+.3f}), "
                  f"outliers {100 * row['outlier_rate']:.2f} %, diverged "
                  f"{100 * row['diverged_rate']:.2f} %, {row['seconds']:.0f} s"
                  + (f", NLL {row['nll_nats_per_dim']:+.3f} +- {row['nll_stderr']:.3f} nats/dim"
                     if "nll_nats_per_dim" in row else ""), flush=True)
        results["variants"][name] = rows
    results["eval_seconds"] = clock.elapsed()
    print(f"test data mean log p: {results['data_mean_log_p']:+.3f}")
    suffix = (("" if args.schedule == "linear" else f"_{args.schedule}")
              + ("_clipbox" if args.clip_box else "") + ("_analytic" if args.analytic else ""))
    results["figure"] = plot(results, args.out_dir / f"sampling_steps{suffix}.png")
    results["json"] = write_results(results, args, f"sampling_steps{suffix}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
