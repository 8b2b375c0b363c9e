"""Model quality: the negative log-likelihood bound on held-out data, and for 2-D toys with a
closed-form density, how likely generated samples are under the true density.

- `nll_bound`: the full variational bound (calc_bpd_loop: sum of the T VLB terms plus the
  prior term) averaged over the first n test examples; bits/dim for images (discretized
  decoder, the usual NLL of 8-bit data), nats/dim for vectors (a differential bound, so it
  can be negative). Class-conditional models are evaluated unconditionally (null class).
- `sample_log_likelihood`: mean log p_true(x) of n generated samples, next to the mean over
  the test split; a model that matches the data gets about the same number. The mean is
  dominated by a few far-off samples, so the median and the outlier share (samples less
  likely than the data's 1 % quantile; 1 % for a perfect model) come with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from core.diffusion import GaussianDiffusion
from core.generate import sample
from core.samplers import DEFAULT_SAMPLER


@torch.no_grad()
def nll_bound(model, diffusion: GaussianDiffusion, data: torch.Tensor, *, n: int = 256,
              batch_size: int = 64, num_classes: int | None = None, seed: int = 0,
              device="cpu", progress: Callable[[int, int], None] | None = None) -> dict:
    """The VLB on data[:n] (N, ...): dict(mean, stderr, n, unit, prior_mean, per_example).

    unit is "bits/dim" for images (data of rank 4) and "nats/dim" otherwise; per_example is
    a float64 numpy array (n,). Noise comes from a generator seeded with `seed`.
    progress(done, n) follows each batch (an exception it raises ends the computation).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n ({n}) and batch_size ({batch_size}) must be positive")
    device = torch.device(device)
    subset = data[:n]
    if subset.shape[0] == 0:
        raise ValueError("nll_bound: the data set has no test examples")
    is_image = subset.ndim == 4
    generator = torch.Generator(device=device).manual_seed(int(seed))
    totals, priors = [], []
    for start in range(0, subset.shape[0], batch_size):
        x0 = subset[start:start + batch_size].to(device, torch.float32)
        kwargs = {}
        if num_classes is not None:
            kwargs["y"] = torch.full((x0.shape[0],), num_classes, dtype=torch.long, device=device)
        result = diffusion.calc_bpd_loop(model, x0, model_kwargs=kwargs, generator=generator)
        totals.append(result["total_bpd"].double().cpu())
        priors.append(result["prior_bpd"].double().cpu())
        if progress is not None:
            progress(start + x0.shape[0], subset.shape[0])
    per_example = torch.cat(totals).numpy()
    prior = torch.cat(priors).numpy()
    scale = 1.0 if is_image else math.log(2.0)       # bits -> nats for vectors
    per_example = per_example * scale
    count = per_example.shape[0]
    stderr = float(per_example.std(ddof=1) / math.sqrt(count)) if count > 1 else float("nan")
    return {"mean": float(per_example.mean()), "stderr": stderr, "n": count,
            "unit": "bits/dim" if is_image else "nats/dim",
            "prior_mean": float(prior.mean() * scale), "per_example": per_example}


def sample_log_likelihood(model, diffusion: GaussianDiffusion, dataset, *, n: int = 2000,
                          seed: int = 0, device="cpu", sampler: str = DEFAULT_SAMPLER,
                          steps: int | None = None, num_classes: int | None = None,
                          clip_to_data: bool = True) -> dict:
    """Mean log p_true of n generated samples vs the test split's, in nats (per example).

    Returns dict(samples, data, difference = samples - data, samples_median, data_median,
    outlier_share (fraction of samples with log p below the test split's 1 % quantile,
    samples outside the support included), samples_in_support (fraction with finite
    density), n). Means and medians are over examples with finite density (the
    checkerboard is zero off its squares). Sampling clamps x0 estimates to the training
    data's box (core.training.data_box) as the app and the CLI do, unless clip_to_data is
    False. Raises ValueError when the data set has no closed-form density.
    """
    if dataset.log_density is None:
        raise ValueError(f"the data set {dataset.name!r} has no closed-form density")
    from core.training import data_box

    box = data_box(dataset.train) if clip_to_data else None
    trajectory = sample(model, diffusion, n, tuple(dataset.shape), sampler=sampler, steps=steps,
                        num_classes=num_classes, seed=seed, record_every=10**9, device=device,
                        data_box=box)
    samples = np.asarray(dataset.log_density(trajectory.final.astype(np.float64)), dtype=np.float64)
    data = np.asarray(dataset.log_density(dataset.test.double().cpu().numpy()), dtype=np.float64)
    finite = np.isfinite(samples)
    data = data[np.isfinite(data)]
    sample_mean = float(samples[finite].mean()) if finite.any() else float("-inf")
    sample_median = float(np.median(samples[finite])) if finite.any() else float("-inf")
    data_mean = float(data.mean())
    threshold = float(np.quantile(data, 0.01))
    outliers = float(np.mean(~finite | (samples < threshold)))
    return {"samples": sample_mean, "data": data_mean, "difference": sample_mean - data_mean,
            "samples_median": sample_median, "data_median": float(np.median(data)),
            "outlier_share": outliers, "samples_in_support": float(finite.mean()), "n": n}
