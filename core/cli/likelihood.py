"""`python -m core likelihood`: log-likelihoods of points under a model, by the
probability-flow ODE (exact, core.likelihood) or the variational bound (a lower bound,
core.metrics). Per point in nats (--npy); the summary (--json, and stdout): the mean log-likelihood
per point, the NLL in nats/dim and, for images, bits/dim of the 8-bit data (uniform
dequantisation for the ODE). For Gaussian-mixture data the true NLL of the same points
(-log q_0 / D) and the gap (model NLL - true NLL, >= 0 in expectation) are reported."""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from core.cli.common import (
    UsageError,
    add_threads,
    bounded_float,
    bounded_int,
    check_output,
    limited_int,
    write_output,
)
from core.cli.source import add_source, load_source

TRACES = ("auto", "exact", "hutchinson")


def add_parser(commands) -> None:
    lik = commands.add_parser(
        "likelihood", help="log-likelihood of points: probability-flow ODE or VLB",
        description="Log-likelihood of points under a model: --method ode (the probability-"
                    "flow ODE with the instantaneous change of variables; exact trace for "
                    "2-D data, Hutchinson's estimator with an error bar for images) or --method "
                    "vlb (the variational lower bound). Points from --points FILE.npy or the "
                    "first --data N test points of the model's data set.")
    add_threads(lik)
    add_source(lik, "evaluate")
    lik.add_argument("--method", choices=("ode", "vlb"), default="ode")
    points = lik.add_mutually_exclusive_group()
    points.add_argument("--points", help="a .npy of points (N, *data shape), in the data's "
                        "scaling ([-1, 1] for images)")
    points.add_argument("--data", type=limited_int("sampling.n"), default=None,
                        help="the first N points of the test split (default 500 for 2-D "
                             "data, 64 for images)")
    lik.add_argument("--trace", choices=TRACES, default="auto",
                     help="ODE trace: exact (D Jacobian-vector products), hutchinson "
                          "(Rademacher probes), auto: exact up to 16 dimensions")
    lik.add_argument("--probes", type=bounded_int(2, 64), default=4,
                     help="Hutchinson probes per point (default 4)")
    lik.add_argument("--rtol", type=bounded_float(1e-10, 0.1), default=1e-5)
    lik.add_argument("--atol", type=bounded_float(1e-10, 0.1), default=1e-5)
    lik.add_argument("--batch-size", type=limited_int("train.batch_size"), default=None,
                     help="points per solve (default 500 for 2-D, 16 for images)")
    lik.add_argument("--seed", type=limited_int("sampling.seed"), default=0)
    lik.add_argument("--json", help="write the summary as JSON")
    lik.add_argument("--npy", help="write one log-likelihood per point (nats; for images "
                                   "the log-probability of the 8-bit point)")
    lik.add_argument("--force", action="store_true", help="overwrite existing output files")
    lik.add_argument("--device", default="auto")


def _points(args, source, dataset_fn):
    import torch

    if args.points is not None:
        try:
            array = np.load(args.points, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--points {args.points}: cannot be read as a .npy array "
                             f"({exc})") from None
        if array.ndim < 2 or tuple(array.shape[1:]) != tuple(source.data_shape):
            raise UsageError(f"--points {args.points}: holds shape {tuple(array.shape)}, "
                             f"expected (N, {', '.join(map(str, source.data_shape))})")
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise UsageError(f"--points {args.points}: must hold finite numbers")
        return torch.as_tensor(np.asarray(array, dtype=np.float64))
    images = len(source.data_shape) == 3
    n = args.data if args.data is not None else (64 if images else 500)
    test = dataset_fn().test
    if len(test) == 0:
        raise UsageError("--data: the data set has no test split; give --points")
    return test[:n].double()


def run(args) -> int:
    from core.device import resolve_device
    from core.likelihood import bits_per_dim
    from core.likelihood_table import (
        ode_log_likelihood,
        true_log_likelihood,
        vlb_log_likelihood,
    )

    outputs = {flag: value for flag, value in (("--json", args.json), ("--npy", args.npy))
               if value}
    paths = {flag: check_output(flag, value, args.force) for flag, value in outputs.items()}
    device = resolve_device(args.device)
    source = load_source(args, device)
    points = _points(args, source, source.dataset)
    images = len(source.data_shape) == 3
    dims = int(np.prod(source.data_shape))
    if args.method == "vlb":
        per_point = vlb_log_likelihood(source.model, source.diffusion, points,
                                       num_classes=source.num_classes, seed=args.seed,
                                       device=device, progress=_bar)
        extra = {}
    else:
        result = ode_log_likelihood(source.model, source.diffusion, points,
                                    num_classes=source.num_classes, trace=args.trace,
                                    probes=args.probes, rtol=args.rtol, atol=args.atol,
                                    batch_size=args.batch_size, seed=args.seed, device=device,
                                    progress=_bar)
        per_point, stderr, trace = result["log_likelihood"], result["stderr"], result["trace"]
        extra = {"trace": trace, "probes": args.probes if trace == "hutchinson" else None,
                 "nfe": result["nfe"], "rtol": args.rtol, "atol": args.atol,
                 "probe_stderr_per_dim": float(np.sqrt((stderr ** 2).mean() / len(stderr)))
                 / dims}
    if sys.stderr.isatty():
        print(file=sys.stderr)
    summary = {"method": args.method, "source": source.title, "n": int(len(per_point)),
               "dims": dims, **extra}
    summary.update(_mean("log_likelihood", per_point))
    summary.update(_mean("nll_nats_per_dim", -per_point / dims))
    if images:
        summary.update(_mean("bits_per_dim", bits_per_dim(per_point + dims * math.log(128.0),
                                                          dims)))
    mixture = source.dataset().mixture if not images else None
    if mixture is not None:
        truth = true_log_likelihood(mixture, source.diffusion, points)
        summary.update(_mean("true_nll_nats_per_dim", -truth / dims))
        summary.update(_mean("gap_nats_per_dim", (truth - per_point) / dims))
    text = json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in summary.items()})
    print(text)
    if "--json" in paths:
        write_output("--json", paths["--json"], lambda temp: temp.write_text(text + "\n"))
    if "--npy" in paths:
        write_output("--npy", paths["--npy"],
                     lambda temp: np.save(temp.open("wb"), per_point.astype(np.float64)))
    for flag, path in paths.items():
        print(f"wrote {path} ({flag[2:]})", file=sys.stderr)
    return 0


def _mean(key: str, values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {key: float(values.mean()), f"{key}_stderr": stderr}


def _bar(fraction: float, width: int = 30) -> None:
    if not sys.stderr.isatty():
        return
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}%", end="",
          file=sys.stderr, flush=True)
