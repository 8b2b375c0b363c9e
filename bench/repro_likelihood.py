"""The likelihood table for docs/REPRODUCTION.md: for each checkpoint, on the first N test
points, the variational bound (core.metrics.nll_bound), the probability-flow ODE with the
model (core.likelihood.flow), and for Gaussian-mixture data the ODE with the exact score
and the truth -log q_0; NLL in nats/dim for 2-D data and bits/dim (8-bit, dequantised for
the ODE) for images.

    python bench/repro_likelihood.py --checkpoints toy.ckpt,toy-ve.ckpt --n 2000
    python bench/repro_likelihood.py --checkpoints mnist-cpu.ckpt --n 64 --probes 4
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.checkpoint import load_checkpoint  # noqa: E402
from core.cli.common import training_data  # noqa: E402
from core.exact import ExactEps  # noqa: E402
from core.likelihood import bits_per_dim, dequantize, eps_function, flow  # noqa: E402
from core.metrics import nll_bound  # noqa: E402


def _mean(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.4f} ± {values.std(ddof=1) / math.sqrt(len(values)):.4f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--probes", type=int, default=4)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--batch", type=int, default=500)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | data | VLB bound | ODE (model) | ODE (exact score) | truth | ODE NFE | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.checkpoints.split(","):
        started = time.perf_counter()
        checkpoint = load_checkpoint(path)
        dataset = training_data(path, checkpoint)
        model = checkpoint.build_model(ema=True)
        diffusion = checkpoint.build_diffusion()
        images = len(checkpoint.data_shape) == 3
        dims = int(np.prod(checkpoint.data_shape))
        points = dataset.test[: args.n].double()
        kwargs = {}
        if checkpoint.num_classes is not None:
            kwargs["y"] = torch.full((1,), checkpoint.num_classes, dtype=torch.long)
        bound = nll_bound(model, diffusion, points.float(), n=len(points), batch_size=64,
                          num_classes=checkpoint.num_classes, seed=0)
        generator = torch.Generator().manual_seed(0)
        values, nfe = [], 0
        batch = 16 if images else args.batch
        for start in range(0, len(points), batch):
            x = points[start:start + batch]
            x = dequantize(x, generator) if images else x
            result = flow(eps_function(model, diffusion, kwargs), diffusion, x,
                          trace="hutchinson" if images else "exact", probes=args.probes,
                          rtol=args.rtol, atol=args.rtol, generator=generator)
            values.append(result.log_likelihood)
            nfe += result.nfe
        ode = np.concatenate(values)
        ode_text = _mean(bits_per_dim(ode, dims) if images else -ode / dims)
        exact_text = truth_text = "—"
        if dataset.mixture is not None:
            exact = ExactEps(dataset.mixture, diffusion.schedule)
            result = flow(eps_function(exact, diffusion), diffusion, points, trace="exact",
                          rtol=1e-6, atol=1e-6)
            exact_text = _mean(-result.log_likelihood / dims)
            truth = exact.log_density_abar(points, torch.ones(len(points))).numpy()
            truth_text = _mean(-truth / dims)
        unit = "bits/dim" if images else "nats/dim"
        print(f"| {Path(path).name} | {dataset.name}, n={len(points)} ({unit}) | "
              f"{_mean(bound['per_example'])} | {ode_text} | {exact_text} | {truth_text} | "
              f"{nfe} | {time.perf_counter() - started:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
