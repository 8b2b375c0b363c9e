"""The sampler lab's table for docs/REPRODUCTION.md: every registered sampler at a ladder of
network evaluations on 8 Gaussians (toy-2d preset, T = 100 linear), with the exact eps and
with a trained model, on two step spacings, scored by k-NN KL (nats) against fresh true
samples; or on an image checkpoint, scored by the Frechet distance in the data set's own
classifier features.

    python bench/repro_sampler_lab.py --checkpoint toy.ckpt --out runs/lab_toy.json
    python bench/repro_sampler_lab.py --checkpoint mnist.ckpt --nfe 10,20,50,100 --n 500 \\
        --spacings uniform,logsnr --out runs/lab_mnist.json

Prints one markdown table per (model, spacing): rows samplers, columns NFE, cells the
score (and, for the fixed-step samplers, the wall seconds of the whole lab at the end).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import core.samplers as registry  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.cli.common import training_data  # noqa: E402
from core.exact import ExactEps  # noqa: E402
from core.lab import LabSettings, image_scorer, point_scorer, run_lab  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--samplers", default=",".join(registry.sampler_names()))
    p.add_argument("--nfe", default="5,10,20,50,100")
    p.add_argument("--spacings", default="uniform,logsnr")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON of every point")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = training_data(args.checkpoint, checkpoint)
    diffusion = checkpoint.build_diffusion()
    images = len(checkpoint.data_shape) == 3
    score, floor = (image_scorer(dataset, args.n, args.seed) if images
                    else point_scorer(dataset, args.n))
    metric = "fd" if images else "knn_kl"
    models = [("model", checkpoint.build_model(ema=True))]
    if dataset.mixture is not None:
        models.append(("exact", ExactEps(dataset.mixture, diffusion.schedule)))
    nfe = [int(v) for v in args.nfe.split(",")]
    rows, started = [], time.perf_counter()
    for spacing in args.spacings.split(","):
        settings = LabSettings(samplers=args.samplers.split(","), nfe=nfe, spacing=spacing,
                               n=args.n, seed=args.seed)
        for name, model in models:
            points = run_lab(model, diffusion, checkpoint.data_shape, settings, score,
                             model_name=name, data_box=checkpoint.data_box)
            rows += [{"spacing": spacing, "model": name, "sampler": q.sampler, "nfe": q.nfe,
                      "target": q.target, "steps": q.steps, "tolerance": q.tolerance,
                      "seconds": q.seconds, **{k: v for k, v in q.scores.items()
                                               if not isinstance(v, str)}} for q in points]
            print(f"{spacing} {name}: {len(points)} runs, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "metric": metric,
                                          "floor": {k: v for k, v in floor.items()
                                                    if not isinstance(v, str)},
                                          "n": args.n, "rows": rows}, indent=1))
    print(f"floor {metric} = {floor.get(metric, float('nan')):.4f}")
    for spacing in args.spacings.split(","):
        for name, _ in models:
            print(f"\n{name}, {spacing} spacing ({metric}; RK45: NFE as counted)\n")
            print("| sampler | " + " | ".join(f"NFE {v}" for v in nfe) + " |")
            print("|---|" + "---|" * len(nfe))
            for sampler in args.samplers.split(","):
                own = [r for r in rows if (r["spacing"], r["model"], r["sampler"]) == (spacing, name, sampler)]
                if registry.get_sampler(sampler).adaptive:
                    cells = [f"{r[metric]:.3f} @{r['nfe']}" for r in own if metric in r]
                    print(f"| {sampler} | " + ", ".join(cells) + " |" + " |" * (len(nfe) - 1))
                    continue
                by_target = {r["target"]: r for r in own}
                cells = []
                for target in nfe:
                    r = by_target.get(target)
                    cells.append("-" if r is None or metric not in r else
                                 f"{r[metric]:.3f}" + ("" if r["nfe"] == target else f" ({r['nfe']})"))
                print(f"| {sampler} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
