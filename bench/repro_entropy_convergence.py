"""How close the learned entropy and Analytic-DPM's get to the true H(X_{t-1}|X_t) during
training, measured the way the app's Entropy panel draws it.

The app's default 2-D set-up (toy-2d preset: 8 Gaussians, linear schedule, T = 100) with
learned_range + L_hybrid, trained by core.training.Trainer; at every probe (the panel's
data) we compare, at the probe's timesteps t >= 1, the *position between the bounds*
(H - lower) / (upper - lower) (core.entropy.position_between_bounds; 0 = beta-tilde_t,
1 = beta_t) of

- the learned Sigma_theta's entropy (for learned_range this is the mean weight v),
- Analytic-DPM's sigma*^2 from the probe's eps predictions (clipped, core.analytic_dpm),

with the exact truth (core.mixture.reverse_process_curves at the same t). Reported: the
mean |position - true position| over the small-t half (t < T/4, where the bounds differ
most) and the rest, per probe step.

    nice -n 10 python bench/repro_entropy_convergence.py   # ~2 min on one CPU core
"""

from __future__ import annotations

import sys

import numpy as np
from _repro_common import Stopwatch, base_parser, hardware_line, setup_torch, write_results

from core.data import get_dataset
from core.entropy import entropy_bounds, learned_variance_entropy, position_between_bounds
from core.mixture import reverse_process_curves
from core.presets import load_preset
from core.training import Trainer


def positions(probe: dict, truth: dict, schedule) -> dict:
    """Positions between the bounds at the probe's t >= 1 (arrays (K,))."""
    upper, lower = entropy_bounds(schedule, 1)
    t = np.asarray(probe["t"])
    keep = t > 0
    t = t[keep]
    learned = learned_variance_entropy(np.asarray(probe["log_var_mean"])[keep], 1)
    analytic = learned_variance_entropy(np.log(np.asarray(probe["analytic_variance"])[keep]), 1)
    true = truth["true_entropy"][keep]
    pos = lambda h: position_between_bounds(h, lower[t], upper[t])  # noqa: E731
    return {"t": t, "learned": pos(learned), "analytic": pos(analytic), "true": pos(true),
            "true_err": truth["true_entropy_err"][keep] / (upper[t] - lower[t])}


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--probe-every", type=int, default=250)
    parser.add_argument("--mc", type=int, default=4000, help="Monte Carlo draws per t for the truth")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.probe_every, args.mc = 40, 20, 200
    setup_torch(args.threads)
    config = load_preset("toy-2d")
    config.diffusion.variance_type = "learned_range"
    config.diffusion.loss_type = "hybrid"
    config.train.steps = args.steps
    config.train.probe_every = args.probe_every
    config.train.device = "cpu"
    if args.quick:
        config.train.num_samples = 2000
    config.validate()
    dataset = get_dataset(config.train.dataset, num_samples=config.train.num_samples,
                          seed=config.train.seed)
    clock = Stopwatch()
    trainer = Trainer(config, dataset=dataset)
    trainer.run(args.steps)
    train_seconds = clock.elapsed()
    schedule = trainer.diffusion.schedule
    T = schedule.num_timesteps
    truth = reverse_process_curves(dataset.mixture, schedule, trainer.probe_history[0]["t"],
                                   n=args.mc, seed=1)
    rows = []
    for probe in trainer.probe_history:
        p = positions(probe, truth, schedule)
        small = p["t"] < T // 4
        row = {"step": int(probe["step"])}
        for name in ("learned", "analytic"):
            gap = np.abs(p[name] - p["true"])
            row[f"{name}_small_t"] = float(np.mean(gap[small]))
            row[f"{name}_large_t"] = float(np.mean(gap[~small]))
        rows.append(row)
    last = positions(trainer.probe_history[-1], truth, schedule)
    print(f"{hardware_line()}; trained {args.steps} steps in {train_seconds:.0f} s")
    print("mean |position - true position| (0 = beta-tilde, 1 = beta), t < T/4 | t >= T/4")
    print(f"{'step':>6} {'learned':>17} {'Analytic-DPM':>17}")
    for row in rows:
        print(f"{row['step']:>6} {row['learned_small_t']:8.3f} {row['learned_large_t']:8.3f} "
              f"{row['analytic_small_t']:8.3f} {row['analytic_large_t']:8.3f}")
    print("true position at the last probe's t:", np.round(last["true"], 3).tolist())
    print("max true-position standard error:", f"{np.max(last['true_err']):.1e}")
    results = {"hardware": hardware_line(), "steps": args.steps, "train_seconds": train_seconds,
               "rows": rows, "last": last}
    write_results(results, args, "entropy_convergence")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
