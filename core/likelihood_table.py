"""The likelihood readout: one model, the same points, every way the explorer has to say
how likely they are, as NLL per dimension (nats/dim; bits/dim of the 8-bit data for images).

- "vlb": the variational bound of the model (core.metrics.nll_bound): an upper bound on its
  NLL (for 2-D data a differential one, with a Gaussian decoder at t = 0).
- "ode": the model's exact log-likelihood by the probability-flow ODE (core.likelihood.flow:
  the exact Jacobian trace up to AUTO_EXACT_DIMS dimensions, Hutchinson's estimator with
  Rademacher probes above; images uniformly dequantised).
- "ode_exact": the same ODE with the exact score of Gaussian-mixture data (core.exact): it
  equals the truth up to the prior mismatch at t = T and the solver's tolerance.
- "truth": -log q_0 of the mixture, the data's own density.

`ode_log_likelihood` and `vlb_log_likelihood` run what `python -m core likelihood` runs (the
same batches, one generator drawn in the same order), so the readout shows its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.likelihood import bits_per_dim, dequantize, eps_function, flow

AUTO_EXACT_DIMS = 16          # the exact trace up to this many dimensions, Hutchinson above
VLB_BATCH = 64
ODE_BATCH = {"vector": 500, "image": 16}
ROW_LABELS = {
    "vlb": "VLB bound (model)",
    "ode": "ODE (model)",
    "ode_exact": "ODE (exact score)",
    "truth": "truth −log q₀",
}


@dataclass
class LikelihoodRow:
    """One method's result on n points. nll: mean NLL in nats/dim and its standard error
    over the points; bits (images): the same in bits/dim of the 8-bit data; probe_stderr:
    the Hutchinson probes' spread of the mean, nats/dim (0 for the exact trace); nfe: network
    evaluations (ODE rows); log_likelihood: per point, nats (images: log P of the 8-bit
    point)."""

    key: str
    label: str
    nll: float
    nll_stderr: float
    bits: float | None
    bits_stderr: float | None
    nfe: int | None
    probe_stderr: float | None
    log_likelihood: np.ndarray


def trace_for(dims: int, trace: str = "auto") -> str:
    """The trace estimator: "exact" up to AUTO_EXACT_DIMS dimensions for "auto"."""
    return trace if trace != "auto" else ("exact" if dims <= AUTO_EXACT_DIMS else "hutchinson")


def null_class_kwargs(num_classes: int | None, device) -> dict:
    """Class-conditional models are evaluated unconditionally: the null class."""
    if num_classes is None:
        return {}
    return {"y": torch.full((1,), num_classes, dtype=torch.long, device=device)}


def ode_log_likelihood(model, diffusion, points: torch.Tensor, *, num_classes=None,
                       trace: str = "auto", probes: int = 4, rtol: float = 1e-5,
                       atol: float = 1e-5, batch_size: int | None = None, seed: int = 0,
                       device="cpu", progress: Callable[[float], None] | None = None) -> dict:
    """log p(x) per point (N, *shape) by the probability-flow ODE, batch by batch (images
    dequantised first from the same generator as the probes). Returns dict(log_likelihood
    (N,) nats (images: log P of the 8-bit point, i.e. minus D log 128), stderr (N,) (probe
    spread), nfe, trace, dims). progress(fraction) follows the solve; an exception it raises
    ends it."""
    images = points.ndim == 4
    dims = int(np.prod(points.shape[1:]))
    trace = trace_for(dims, trace)
    batch = batch_size or ODE_BATCH["image" if images else "vector"]
    eps = eps_function(model, diffusion, null_class_kwargs(num_classes, device))
    generator = torch.Generator().manual_seed(int(seed))
    values, errors, nfe = [], [], 0
    for start in range(0, len(points), batch):
        x = points[start:start + batch]
        if images:
            x = dequantize(x, generator)

        def report(fraction, done=start, size=len(x)):
            if progress is not None:
                progress((done + fraction * size) / len(points))

        result = flow(eps, diffusion, x.to(device), trace=trace, probes=probes, rtol=rtol,
                      atol=atol, generator=generator, progress=report)
        values.append(result.log_likelihood)
        errors.append(result.stderr)
        nfe += result.nfe
    per_point = np.concatenate(values)
    if images:
        per_point = per_point - dims * math.log(128.0)
    return {"log_likelihood": per_point, "stderr": np.concatenate(errors), "nfe": nfe,
            "trace": trace, "dims": dims}


def vlb_log_likelihood(model, diffusion, points: torch.Tensor, *, num_classes=None,
                       seed: int = 0, device="cpu",
                       progress: Callable[[float], None] | None = None) -> np.ndarray:
    """The bound's log-likelihood per point (N,) in nats (images: of the 8-bit point)."""
    from core.metrics import nll_bound

    images = points.ndim == 4
    dims = int(np.prod(points.shape[1:]))
    bound = nll_bound(model, diffusion, points.float(), n=len(points), batch_size=VLB_BATCH,
                      num_classes=num_classes, seed=seed, device=device,
                      progress=None if progress is None else lambda d, n: progress(d / n))
    per_dim = bound["per_example"] * (math.log(2.0) if images else 1.0)      # nats/dim
    return -per_dim * dims


def true_log_likelihood(mixture, diffusion, points: torch.Tensor) -> np.ndarray:
    """log q_0 per point (N,) in nats: the mixture's own density."""
    from core.exact import ExactEps

    exact = ExactEps(mixture, diffusion.schedule)
    return exact.log_density_abar(points.double(), torch.ones(len(points))).numpy()


def _row(key: str, log_likelihood: np.ndarray, dims: int, images: bool, nfe=None,
         stderr=None) -> LikelihoodRow:
    nll = -np.asarray(log_likelihood, dtype=np.float64) / dims
    n = len(nll)
    spread = float(nll.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    bits = bits_stderr = None
    if images:
        per_bits = bits_per_dim(log_likelihood + dims * math.log(128.0), dims)
        bits, bits_stderr = float(per_bits.mean()), spread / math.log(2.0)
    probe = (None if stderr is None
             else float(np.sqrt((np.asarray(stderr) ** 2).mean() / len(stderr))) / dims)
    return LikelihoodRow(key, ROW_LABELS[key], float(nll.mean()), spread, bits, bits_stderr,
                         nfe, probe, np.asarray(log_likelihood, dtype=np.float64))


def likelihood_rows(model, diffusion, points: torch.Tensor, *, mixture=None,
                    num_classes=None, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-5,
                    probes: int = 4, device="cpu",
                    progress: Callable[[float], None] | None = None) -> list[LikelihoodRow]:
    """The rows that apply, in the order of ROW_LABELS: "vlb" and "ode" with a model (None:
    none), "ode_exact" and "truth" with a mixture (vector data only). points: (N, *shape)
    in the data's scaling. progress(fraction of all rows) follows the work."""
    images = points.ndim == 4
    dims = int(np.prod(points.shape[1:]))
    keys = ([] if model is None else ["vlb", "ode"]) + (
        ["ode_exact", "truth"] if mixture is not None and not images else [])
    heavy = [key for key in keys if key != "truth"]
    rows = []
    for key in keys:
        index = heavy.index(key) if key in heavy else 0

        def part(fraction, index=index):
            if progress is not None:
                progress((index + fraction) / max(1, len(heavy)))

        if key == "vlb":
            rows.append(_row(key, vlb_log_likelihood(model, diffusion, points,
                                                     num_classes=num_classes, seed=seed,
                                                     device=device, progress=part),
                             dims, images))
        elif key in ("ode", "ode_exact"):
            if key == "ode_exact":
                from core.exact import ExactEps

                source, classes = ExactEps(mixture, diffusion.schedule).eval(), None
            else:
                source, classes = model, num_classes
            result = ode_log_likelihood(source, diffusion, points, num_classes=classes,
                                        probes=probes, rtol=rtol, atol=atol, seed=seed,
                                        device=device if key == "ode" else "cpu", progress=part)
            rows.append(_row(key, result["log_likelihood"], dims, images, nfe=result["nfe"],
                             stderr=result["stderr"] if result["trace"] != "exact" else None))
        else:
            rows.append(_row(key, true_log_likelihood(mixture, diffusion, points), dims, images))
    return rows
