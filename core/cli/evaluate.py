"""`python -m core evaluate`: the NLL bound and sample quality as one JSON object."""

from __future__ import annotations

import json
import math

from core.cli.common import add_threads, limited_int
from core.cli.source import add_foreign_flags, load_source
from core.samplers.base import VARIANCE


def add_parser(commands) -> None:
    ev = commands.add_parser("evaluate", help="NLL bound and sample quality as one JSON object",
                             description="Evaluate the EMA weights of a checkpoint on its data "
                             "set's test split (a model trained elsewhere on --dataset's): the "
                             "variational bound (bits/dim for images, "
                             "nats/dim for vectors) and, for 2-D toys with a density, the mean "
                             "log-likelihood of generated samples next to the data's own.")
    add_threads(ev)
    ev.add_argument("--checkpoint", required=True,
                    help="a checkpoint (its EMA weights), a diffusers pipeline or UNet2DModel "
                         "folder, or an improved-/guided-diffusion .pt (with --model-flags and "
                         "--dataset)")
    add_foreign_flags(ev)
    ev.add_argument("--n", type=limited_int("sampling.n"), default=128,
                    help="test examples for the bound (default 128)")
    ev.add_argument("--samples", type=limited_int("sampling.n"), default=2000,
                    help="samples for the 2-D log-likelihood (default 2000)")
    ev.add_argument("--batch-size", type=limited_int("train.batch_size"), default=64)
    ev.add_argument("--seed", type=limited_int("sampling.seed"), default=0)
    ev.add_argument("--variance", choices=[value for value, _ in VARIANCE.choices],
                    default=VARIANCE.default,
                    help="reverse-step variance for the bound and the samples: the model's "
                         "(default) or Analytic-DPM's sigma*^2")
    ev.add_argument("--device", default="auto")


def run(args) -> int:
    from core.device import resolve_device
    from core.metrics import nll_bound, sample_log_likelihood

    device = resolve_device(args.device)
    source = load_source(args, device)
    dataset = source.dataset()
    model, diffusion, num_classes = source.model, source.diffusion, source.num_classes
    if args.variance == "analytic":
        from core.analytic_dpm import analytic_diffusion_from_data, gamma_sample

        diffusion = analytic_diffusion_from_data(
            model, diffusion, gamma_sample(dataset.train, seed=args.seed),
            data_shape=source.data_shape, num_classes=num_classes,
            seed=args.seed, device=device)
    bound = nll_bound(model, diffusion, dataset.test, n=args.n, batch_size=args.batch_size,
                      num_classes=num_classes, seed=args.seed, device=device)
    key = "bits_per_dim" if bound["unit"] == "bits/dim" else "nats_per_dim"
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset.name,
              "step": source.step, "kind": "image" if len(source.data_shape) == 3 else "vector",
              "variance": args.variance,
              key: bound["mean"], f"{key}_stderr": bound["stderr"], "n": bound["n"],
              "prior_" + key: bound["prior_mean"]}
    if dataset.kind == "vector" and dataset.log_density is not None:
        quality = sample_log_likelihood(model, diffusion, dataset, n=args.samples, seed=args.seed,
                                        device=device, num_classes=num_classes)
        result.update(samples_log_likelihood=quality["samples"],
                      data_log_likelihood=quality["data"],
                      log_likelihood_gap=quality["difference"],
                      samples_log_likelihood_median=quality["samples_median"],
                      data_log_likelihood_median=quality["data_median"],
                      samples_outlier_share=quality["outlier_share"],
                      samples_in_support=quality["samples_in_support"],
                      num_samples=quality["n"])
    print(json.dumps({k: _json_number(v) for k, v in result.items()}))
    return 0


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


