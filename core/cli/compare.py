"""`python -m core compare-samplers`: the sampler lab (core.lab) from the command line.

Every chosen sampler at every chosen NFE from one x_T, scored against fresh true samples;
with a checkpoint on Gaussian-mixture data also with the exact eps, so the sampler's own
error and the model's show apart. Writes a JSON report, a CSV table and a PNG of one score
against NFE (solid: the trained model, dashed: the exact eps; grey: the data-vs-data floor).
"""

from __future__ import annotations

import json
import math
import sys

import core.samplers as sampler_registry
from core.cli.common import (
    UsageError,
    add_threads,
    bounded_int,
    check_output,
    limited_int,
    write_output,
)
from core.cli.source import add_source, load_source
from core.spacing import DEFAULT_SPACING, SPACING_NAMES

SCORES = ("knn_kl", "energy_distance", "moment_kl", "precision", "recall", "mean_log_density",
          "fd", "kid")


def add_parser(commands) -> None:
    cmp = commands.add_parser(
        "compare-samplers", help="score samplers against NFE (the sampler lab)",
        description="Run each sampler at each NFE from the same x_T and score the samples "
                    "against fresh true samples (2-D data: k-NN KL, energy distance, k-NN "
                    "precision/recall, per-component moment KL and mean exact log-density for "
                    "mixtures; images: Frechet distance and KID in the features of a small "
                    "classifier trained on the data set, cached). With --checkpoint on a "
                    "Gaussian mixture, also with the exact eps (--preset NAME --exact: the "
                    "exact eps alone).")
    add_threads(cmp)
    add_source(cmp, "compare samplers of")
    cmp.add_argument("--samplers", required=True,
                     help="comma-separated names: " + ", ".join(sampler_registry.sampler_names()))
    cmp.add_argument("--nfe", default="1,2,3,5,8,10,15,20,30,50,100,250",
                     help="comma-separated network-evaluation budgets (default the ladder "
                          "1..250; a sampler takes the most steps that fit)")
    cmp.add_argument("--spacing", choices=SPACING_NAMES, default=DEFAULT_SPACING)
    cmp.add_argument("--n", type=limited_int("sampling.n"), default=2000,
                     help="samples per run (default 2000)")
    cmp.add_argument("--seed", type=limited_int("sampling.seed"), default=0)
    cmp.add_argument("--score", choices=SCORES, default=None,
                     help="the score the plot shows (default knn_kl for points, fd for images)")
    cmp.add_argument("--json", help="the report as JSON")
    cmp.add_argument("--csv", help="one row per sampler x NFE")
    cmp.add_argument("--plot", help="a PNG of --score against NFE")
    cmp.add_argument("--force", action="store_true", help="overwrite existing output files")
    cmp.add_argument("--device", default="auto")


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in sampler_registry.sampler_names()]
    if not names or unknown:
        raise UsageError(f"--samplers {text!r}: unknown {', '.join(map(repr, unknown)) or 'list'}; "
                         "choose from " + ", ".join(sampler_registry.sampler_names()))
    return list(dict.fromkeys(names))


def _budgets(text: str) -> list[int]:
    parse = bounded_int(1, 100_000)
    try:
        values = [parse(part.strip()) for part in text.split(",") if part.strip()]
    except Exception as exc:  # noqa: BLE001 - argparse's type error, reworded with the flag
        raise UsageError(f"--nfe {text!r}: {exc}") from None
    if not values:
        raise UsageError("--nfe: give at least one budget")
    return sorted(set(values))


def run(args) -> int:
    from core.device import resolve_device
    from core.exact import ExactEps, exact_diffusion
    from core.lab import LabSettings, image_scorer, point_scorer, run_lab

    settings = LabSettings(samplers=_names(args.samplers), nfe=_budgets(args.nfe),
                           spacing=args.spacing, n=args.n, seed=args.seed)
    outputs = {flag: value for flag, value in (("--json", args.json), ("--csv", args.csv),
                                                ("--plot", args.plot)) if value}
    if not outputs:
        raise UsageError("give --json, --csv and/or --plot")
    paths = {flag: check_output(flag, value, args.force) for flag, value in outputs.items()}
    device = resolve_device(args.device)
    source = load_source(args, device)
    dataset = source.dataset()
    images = len(source.data_shape) == 3
    score, floor = (image_scorer(dataset, settings.n, settings.seed) if images
                    else point_scorer(dataset, settings.n))
    models = [("exact" if source.exact else "model", source.model, source.diffusion)]
    if not source.exact and dataset.mixture is not None:
        models.append(("exact", ExactEps(dataset.mixture, source.diffusion.schedule).to(device),
                       exact_diffusion(source.diffusion)))
    points, progress = [], _Progress(len(models))
    for index, (name, model, diffusion) in enumerate(models):
        points += run_lab(model, diffusion, source.data_shape, settings, score,
                          model_name=name, data_box=source.data_box, device=device,
                          progress=lambda done, total, i=index: progress.update(i, done, total))
    progress.end()
    report = _report(source, settings, floor, points)
    if "--json" in paths:
        text = json.dumps(report, indent=2, default=_json_number)
        write_output("--json", paths["--json"], lambda temp: temp.write_text(text))
    if "--csv" in paths:
        write_output("--csv", paths["--csv"], lambda temp: temp.write_text(_csv(report)))
    if "--plot" in paths:
        picture = _plot(report, args.score or ("fd" if images else "knn_kl"))
        write_output("--plot", paths["--plot"], lambda temp: picture.save(temp, format="PNG"))
    for flag, path in paths.items():
        print(f"wrote {path} ({flag[2:]})", file=sys.stderr)
    return 0


def _report(source, settings, floor, points) -> dict:
    return {"source": source.title, "timesteps": source.diffusion.num_timesteps,
            "spacing": settings.spacing, "n": settings.n, "seed": settings.seed,
            "floor": floor,
            "points": [{"sampler": p.sampler, "model": p.model, "target_nfe": p.target,
                        "nfe": p.nfe, "steps": p.steps, "tolerance": p.tolerance,
                        "seconds": round(p.seconds, 4), **p.scores} for p in points]}


def _json_number(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _csv(report: dict) -> str:
    keys = ["sampler", "model", "target_nfe", "nfe", "steps", "tolerance", "seconds"]
    extra = sorted({k for p in report["points"] for k in p} - set(keys))
    lines = [",".join(keys + extra)]
    for point in report["points"]:
        lines.append(",".join("" if point.get(k) is None else str(point.get(k)) for k in keys + extra))
    return "\n".join(lines) + "\n"


def _plot(report: dict, score: str):
    import numpy as np

    from core.cli.line_plot import PALETTE, Series, line_plot

    series = []
    names = list(dict.fromkeys(p["sampler"] for p in report["points"]))
    for i, name in enumerate(names):
        for model in ("model", "exact"):
            rows = [p for p in report["points"] if p["sampler"] == name and p["model"] == model]
            if rows and any(score in p for p in rows):
                label = f"{name} ({'exact eps' if model == 'exact' else 'model'})"
                series.append(Series(label, np.array([p["nfe"] for p in rows], dtype=float),
                                     np.array([p.get(score, np.nan) for p in rows], dtype=float),
                                     PALETTE[i % len(PALETTE)], dashed=model == "exact"))
    positive = all(p.get(score, 1.0) is None or p.get(score, 1.0) > 0 for p in report["points"])
    return line_plot(series, title=f"{score} against NFE, {report['source']}, "
                                   f"{report['spacing']} spacing, n = {report['n']}",
                     x_label="network evaluations (NFE)", y_label=score,
                     log_y=positive and score != "mean_log_density",
                     reference=report["floor"].get(score), reference_label="data vs data")


class _Progress:
    def __init__(self, passes: int):
        self.passes, self.tty = passes, sys.stderr.isatty()

    def update(self, index: int, done: int, total: int) -> None:
        line = f"pass {index + 1}/{self.passes}: run {done}/{total}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(40))
        elif done == total or done % 10 == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
