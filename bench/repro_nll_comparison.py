"""Improved DDPM's NLL comparison at equal training budget on MNIST-5k test digits.

Three runs, identical except for the diffusion objective (same UNet, data, batch, steps,
learning rate, seed; T = 1000):

    A  linear schedule, eps, fixed beta-tilde (fixed_small), L_simple         (Ho et al.)
    B  cosine schedule, eps, learned_range,                  L_hybrid         (improved DDPM)
    C  cosine schedule, eps, learned_range,                  L_vlb + loss-aware importance sampling

Each is scored by the variational bound in bits/dim on the test digits (discretized Gaussian
decoder at t = 0, pred_x0 clipped to [-1, 1] as improved-diffusion does). The full bound
needs T network calls per image (calc_bpd_loop); to score all test images on a CPU the
script uses an unbiased stratified estimate of the same sum

    NLL(x0) = prior + sum_{t<E} L_t + sum_{s=1..S} |stratum_s| L_{t_s},  t_s ~ U(stratum_s),

with every t below E evaluated exactly (the first terms dominate; improved DDPM Fig. 2) and
one random t per stratum and image above. The per-image estimates are unbiased, so their
mean's standard error over images covers the stratification noise too. On `--full-images`
images calc_bpd_loop is also run: its vb columns make Figure 2 (bench/repro_vlb_terms.py)
and its totals check the stratified estimate. The paper's direction: B < A and C lowest.

    nice -n 10 python bench/repro_nll_comparison.py     # ~40 min on 1 CPU thread
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from _repro_common import (
    Stopwatch,
    base_parser,
    hardware_line,
    mean_and_stderr,
    setup_torch,
    train_snapshots,
    write_results,
)

from core.config import DiffusionConfig, ExperimentConfig, ModelConfig, TrainConfig
from core.data import get_dataset

RUNS = {
    "A_linear_fixed_simple": dict(schedule="linear", variance_type="fixed_small",
                                  loss_type="simple", timestep_sampler="uniform"),
    "B_cosine_learned_hybrid": dict(schedule="cosine", variance_type="learned_range",
                                    loss_type="hybrid", timestep_sampler="uniform"),
    "C_cosine_learned_vlb_is": dict(schedule="cosine", variance_type="learned_range",
                                    loss_type="vlb", timestep_sampler="loss-aware"),
}


def make_config(name: str, args) -> ExperimentConfig:
    """The ExperimentConfig of run `name`: only the diffusion section differs between runs."""
    return ExperimentConfig(
        name=f"nll-{name}-{args.dataset}",
        model=ModelConfig(kind="unet", channels=args.channels, channel_mult=(1, 2, 2),
                          num_res_blocks=1, num_heads=4, dropout=0.0),
        diffusion=DiffusionConfig(timesteps=args.timesteps, mean_type="eps", **RUNS[name]),
        train=TrainConfig(dataset=args.dataset, image_size=args.image_size,
                          batch_size=args.batch_size, lr=args.lr, warmup_steps=100,
                          ema_decay=0.995, steps=args.steps, seed=args.seed, device="cpu",
                          log_every=10, probe_every=0),
    ).validate()


def strata(num_timesteps: int, exact: int, count: int) -> list[np.ndarray]:
    """The timesteps [exact, T) split into `count` contiguous, nearly equal strata."""
    rest = np.arange(min(exact, num_timesteps), num_timesteps)
    return [s for s in np.array_split(rest, min(count, rest.size)) if s.size] if rest.size else []


@torch.no_grad()
def stratified_bpd(diffusion, model, x0: torch.Tensor, exact: int, num_strata: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Unbiased estimate of calc_bpd_loop's total_bpd per image, (B,) bits/dim (see module doc)."""
    T = diffusion.num_timesteps
    batch = x0.shape[0]
    total = diffusion.prior_bpd(x0).double()

    def term(t: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=generator)
        x_t = diffusion.q_sample(x0, t, noise)
        return diffusion.vlb_terms(model, x0, x_t, t, clip_denoised=True)["output"].double()

    for step in range(min(exact, T)):
        total += term(torch.full((batch,), step, dtype=torch.long))
    for stratum in strata(T, exact, num_strata):
        pick = torch.randint(0, stratum.size, (batch,), generator=generator)
        t = torch.from_numpy(stratum)[pick]
        total += stratum.size * term(t)
    return total


def evaluate(run, test: torch.Tensor, args, seed: int) -> dict:
    """Stratified NLL on every test image, and the full calc_bpd_loop on the first few."""
    diffusion, model = run.diffusion, run.model
    generator = torch.Generator().manual_seed(seed)
    clock = Stopwatch()
    estimates = []
    for start in range(0, test.shape[0], args.eval_batch):
        estimates.append(stratified_bpd(diffusion, model, test[start:start + args.eval_batch],
                                        args.exact_steps, args.strata, generator))
    estimates = torch.cat(estimates).numpy()
    stratified_seconds = clock.elapsed()

    clock = Stopwatch()
    full = test[: args.full_images]
    loop = diffusion.calc_bpd_loop(model, full, generator=torch.Generator().manual_seed(seed + 1))
    full_seconds = clock.elapsed()
    same = stratified_bpd(diffusion, model, full, args.exact_steps, args.strata,
                          torch.Generator().manual_seed(seed + 2)).numpy()
    nll, nll_err = mean_and_stderr(estimates)
    full_total, full_err = mean_and_stderr(loop["total_bpd"].numpy())
    return {
        "nll_bpd": nll, "nll_stderr": nll_err, "num_images": int(estimates.size),
        "nll_per_image": estimates,
        "full_loop_bpd": full_total, "full_loop_stderr": full_err,
        "full_loop_images": int(full.shape[0]),
        "stratified_on_full_images": float(same.mean()),
        "vb_mean": loop["vb"].double().mean(dim=0).numpy(),
        "vb_stderr": (loop["vb"].double().std(dim=0) / max(1, full.shape[0]) ** 0.5).numpy(),
        "prior_bpd": float(loop["prior_bpd"].double().mean()),
        "eval_seconds": stratified_seconds, "full_loop_seconds": full_seconds,
    }


def paired_differences(runs: dict) -> dict:
    """NLL(a) - NLL(b) per pair of runs, mean and standard error over the same test images
    (paired, so the image-to-image spread cancels)."""
    names = list(runs)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = (np.asarray(runs[a]["nll_per_image"], dtype=np.float64)
                    - np.asarray(runs[b]["nll_per_image"], dtype=np.float64))
            mean, err = mean_and_stderr(diff)
            out[f"{a} - {b}"] = {"mean": mean, "stderr": err}
    return out


def main(argv=None) -> dict:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=1200, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--channels", type=int, default=16, help="UNet base channels")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--eval-images", type=int, default=0, help="0: every test image")
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--exact-steps", type=int, default=10,
                        help="timesteps below this are always evaluated")
    parser.add_argument("--strata", type=int, default=40, help="strata above --exact-steps")
    parser.add_argument("--full-images", type=int, default=16,
                        help="test images also scored with the full calc_bpd_loop")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of runs")
    parser.add_argument("--no-cache", action="store_true", help="retrain even if cached")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.image_size, args.steps, args.channels = "digits", 8, 4, 8
        args.timesteps, args.eval_images, args.exact_steps, args.strata = 20, 8, 3, 4
        args.full_images, args.batch_size, args.eval_batch = 4, 16, 8
    setup_torch(args.threads)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"--runs: unknown run(s) {unknown}; known: {', '.join(RUNS)}")

    dataset = get_dataset(args.dataset, image_size=args.image_size)
    test = dataset.test if args.eval_images <= 0 else dataset.test[: args.eval_images]
    results = {"hardware": hardware_line(), "dataset": args.dataset,
               "train_images": int(dataset.train.shape[0]), "test_images": int(test.shape[0]),
               "settings": vars(args),
               "runs": {}}
    for i, name in enumerate(names):
        config = make_config(name, args)
        print(f"{name}: training {args.steps} steps", flush=True)
        run = train_snapshots(config, dataset, [args.steps], cache=not (args.no_cache or args.quick),
                              label=name, progress_every=100)
        scores = evaluate(run, test, args, seed=args.seed + 1000 * i)
        scores.update(train_seconds=run.seconds, steps=run.steps, final_train_loss=run.final_loss,
                      parameters=int(sum(p.numel() for p in run.model.parameters())),
                      config=config.to_dict())
        results["runs"][name] = scores
        print(f"{name}: {scores['nll_bpd']:.3f} +- {scores['nll_stderr']:.3f} bits/dim over "
              f"{scores['num_images']} images (full loop on {scores['full_loop_images']}: "
              f"{scores['full_loop_bpd']:.3f}, stratified on the same: "
              f"{scores['stratified_on_full_images']:.3f}); train {run.seconds:.0f} s, eval "
              f"{scores['eval_seconds']:.0f} s + {scores['full_loop_seconds']:.0f} s", flush=True)
    results["paired_differences"] = paired_differences(results["runs"])
    for pair, row in results["paired_differences"].items():
        print(f"{pair}: {row['mean']:+.3f} +- {row['stderr']:.3f} bits/dim (paired)")
    results["json"] = write_results(results, args, "nll_comparison")
    print(f"results: {results['json']}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
