"""Training throughput: our UNet against lucidrains' and diffusers' UNets, same run, same timing.

Our model trains through the Trainer's own step (`Trainer._train_step`, the code
`Trainer.run` calls, with the fast path of core.fast_step that --mode picks) on random
images already on the device, at configurations matched to each peer (parameter count
within 10 %, same resolution and batch; see bench/_bench_common.py). The peers, when
installed (`pip install .[bench]`), are built and stepped exactly as
shared/reference/peer_bench.py does, in the same process. All models are built first, warmed
up, then timed in alternating rounds (a round times --steps/--rounds steps of each model in
turn, the order rotating from round to round), so a drift of the machine hits every model
alike. Per model: the median step time
over all timed steps (CUDA events on a GPU, perf_counter on the CPU), images/s, achieved
TFLOP/s (torch.utils.flop_counter, forward + backward), peak memory (GPU), and the ratio of
each of our runs to each peer's best precision.

    python bench/train_throughput.py                         # GPU: batch 128, 3x32x32
    python bench/train_throughput.py --ablation              # + eager/fp32/compile rows
    python bench/train_throughput.py --tiny                  # CPU smoke test, seconds
    python bench/train_throughput.py --size small --device cpu --threads 1

Loss-curve check (no accuracy lost): --loss-curve N trains the mnist-ddpm preset for N
steps twice from one seed, the plain fp32 eager step against the first --ours run (default:
the fast path), and writes both curves, their smoothed difference against the noise of the
curve, and a plot (--plot PATH, needs matplotlib).

    python bench/train_throughput.py --loss-curve 2000 --plot docs/figures/loss_curve_fast_vs_eager.png

Options: --device, --batch, --steps, --warmup, --rounds, --size tiny|small|full (--tiny),
--precision fp32|bf16|auto, --mode eager|compile|graph|compile+graph|auto,
--compile-mode, --ours PRECISION:MODE[,...], --ablation, --peers NAMES|none,
--peer-precisions, --threads, --json PATH.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_common as common  # noqa: E402

ABLATION = ("fp32:eager", "bf16:eager", "bf16:graph", "bf16:compile", "bf16:compile+graph")


@dataclass
class Variant:
    """One model being timed."""

    label: str
    kind: str                      # "ours" | "peer"
    family: str                    # the peer it is (or is matched to)
    precision: str
    mode: str
    params: int
    flops_per_image: float
    step: object = None
    path: str = ""
    peak_memory_gib: float | None = None
    first_step_s: float = 0.0
    times: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    finish: object = None          # callable -> final loss
    final_loss: float = math.nan


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    p.add_argument("--size", choices=("tiny", "small", "full"), default=None,
                   help="model/image size: full = the issue's 35.7M-parameter peers at 32x32 "
                        "(default on CUDA), small = half width, tiny = 16x16 smoke test")
    p.add_argument("--tiny", action="store_true", help="--size tiny on the CPU (CI smoke test)")
    p.add_argument("--batch", type=int, default=None, help="default 128 (full), 16 (small), 4 (tiny)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per model (>= 30 for figures)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 GPU, 3 CPU)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--mode", default="auto",
                   choices=("auto", "eager", "compile", "graph", "compile+graph"))
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                   choices=("default", "max-autotune-no-cudagraphs", "reduce-overhead",
                            "max-autotune"))
    p.add_argument("--ours", default=None,
                   help="our runs as PRECISION:MODE pairs, e.g. bf16:graph,fp32:eager "
                        "(default: --precision:--mode)")
    p.add_argument("--ablation", action="store_true", help="ours as " + ",".join(ABLATION))
    p.add_argument("--match", default="lucidrains,diffusers",
                   help="which peers to build matched UNets of")
    p.add_argument("--peers", default="lucidrains,diffusers", help="peers to run, or none")
    p.add_argument("--peer-precisions", default=None, help="default fp32,bf16 (GPU), fp32 (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--loss-curve", type=int, default=0, metavar="N",
                   help="instead of timing: compare N-step loss curves on mnist-ddpm")
    p.add_argument("--plot", default=None, help="PNG of the loss curves (with --loss-curve)")
    args = p.parse_args(argv)
    args.device = common.resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    cuda = args.device.startswith("cuda")
    args.size = args.size or ("tiny" if args.tiny else ("full" if cuda else "small"))
    if args.loss_curve and args.batch is None:
        args.batch = 128 if args.size == "full" else 32
    args.batch = args.batch or {"full": 128, "small": 16, "tiny": 4}[args.size]
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    args.peer_precisions = [s for s in (args.peer_precisions or ("fp32,bf16" if cuda else "fp32"))
                            .split(",") if s]
    args.peers = [] if args.peers in ("", "none") else [s for s in args.peers.split(",") if s]
    args.match = [s for s in args.match.split(",") if s]
    if args.ablation:
        ours = list(ABLATION)
    elif args.ours:
        ours = [s for s in args.ours.split(",") if s]
    else:
        ours = [f"{args.precision}:{args.mode}"]
    args.ours = []
    for spec in ours:
        precision, _, mode = spec.partition(":")
        if precision not in ("auto", "fp32", "bf16") or mode not in (
                "auto", "eager", "compile", "graph", "compile+graph"):
            p.error(f"--ours {spec!r}: use PRECISION:MODE with fp32|bf16|auto and "
                    f"eager|compile|graph|compile+graph|auto")
        args.ours.append((precision, mode))
    for name in args.peers + args.match:
        if name not in common.PEER_NAMES:
            p.error(f"unknown peer {name!r}: choose from {', '.join(common.PEER_NAMES)}")
    if args.steps < 1 or args.rounds < 1 or args.batch < 1:
        p.error("--steps, --rounds and --batch must be positive")
    return args


# ---------------------------------------------------------------------------- building
def build_ours(match: str, precision: str, mode: str, args) -> Variant:
    log_every = args.warmup + args.steps + 8
    trainer, fast = common.make_our_trainer(match, args.size, args.batch, args.device,
                                            precision=precision, mode=mode,
                                            compile_mode=args.compile_mode, log_every=log_every)
    from core.fast_step import requested_path
    from core.fast_train import describe_training_path

    if mode == "auto":
        mode = fast.active if fast is not None else requested_path(args.device)
    flops = common.our_flops_per_image(trainer)
    used_precision = fast.precision_used if fast is not None else (
        "bf16" if args.device.startswith("cuda") else "fp32")
    variant = Variant(label=f"ours~{match} {used_precision} {mode}", kind="ours", family=match,
                      precision=used_precision, mode=mode,
                      params=common.parameter_count(trainer.model), flops_per_image=flops,
                      step=trainer._train_step)

    def finish():
        trainer._flush(None)
        variant.path = describe_training_path(trainer)
        return trainer.history["loss"][-1]
    variant.finish = finish
    variant._trainer = trainer
    return variant


def build_peer(name: str, precision: str, args, modules) -> Variant:
    image = common.SIZES[args.size]["image"]
    peer = common.build_peer(name, args.size, args.device, modules)
    flops = common.peer_flops_per_image(peer, image, args.device)
    step = common.peer_step(peer, args.device, precision)
    data = common.peer_data(args.batch, image, args.device)
    state = {"i": 0, "loss": None}

    def run():
        state["loss"] = step(data[state["i"] % len(data)])
        state["i"] += 1

    variant = Variant(label=f"{name} {precision} eager", kind="peer", family=name,
                      precision=precision, mode="eager", params=common.parameter_count(peer["net"]),
                      flops_per_image=flops, step=run, path="eager (peer_bench.py step)")
    variant.finish = lambda: float(state["loss"].detach().float().item())
    return variant


def warm_up(variant: Variant, args, baseline: int) -> None:
    """--warmup untimed steps (the first one timed on its own), then two steps whose peak
    memory above what was allocated before this model was built is reported."""
    common.sync(args.device)
    start = time.perf_counter()
    variant.step()
    common.sync(args.device)
    variant.first_step_s = time.perf_counter() - start
    for _ in range(args.warmup - 1):
        variant.step()
    common.sync(args.device)
    # steady state: resident weights and optimizer state plus one step's activations (not
    # the one-off graph self-check copies)
    common.reset_peak_memory(args.device)
    for _ in range(2):
        variant.step()
    common.sync(args.device)
    variant.peak_memory_gib = common.peak_memory_gib(args.device, baseline)


# ---------------------------------------------------------------------------- report
def summarize(variant: Variant, batch: int) -> dict:
    step_s = common.median(variant.times)
    images_per_s = batch / step_s
    return {
        "label": variant.label, "kind": variant.kind, "family": variant.family,
        "precision": variant.precision, "mode": variant.mode, "path": variant.path,
        "params": variant.params, "params_m": round(variant.params / 1e6, 3),
        "train_gflop_per_image": round(variant.flops_per_image / 1e9, 4),
        "steps_timed": len(variant.times), "step_ms_median": round(step_s * 1e3, 3),
        "step_ms_min": round(min(variant.times) * 1e3, 3),
        "step_ms_max": round(max(variant.times) * 1e3, 3),
        "images_per_s": round(images_per_s, 2),
        "images_per_s_wall": round(batch * len(variant.times) / variant.wall_s, 2),
        "tflops": round(variant.flops_per_image * images_per_s / 1e12, 4),
        "peak_memory_gib": variant.peak_memory_gib,
        "first_step_s": round(variant.first_step_s, 3),
        "final_loss": variant.final_loss, "loss_finite": math.isfinite(variant.final_loss),
    }


def ratios(rows: list[dict]) -> dict:
    """ours img/s over each peer's best precision, and over the faster peer's best."""
    best = {}
    for row in rows:
        if row["kind"] == "peer":
            best[row["family"]] = max(best.get(row["family"], 0.0), row["images_per_s"])
    out = {}
    if not best:
        return out
    fastest = max(best, key=best.get)
    for row in rows:
        if row["kind"] != "ours":
            continue
        entry = {f"vs_{name}": round(row["images_per_s"] / value, 3) for name, value in best.items()}
        entry["vs_faster_peer"] = round(row["images_per_s"] / best[fastest], 3)
        entry["faster_peer"] = fastest
        if row["family"] in best:
            entry["vs_matched_peer"] = entry[f"vs_{row['family']}"]
        out[row["label"]] = entry
    return out


def print_table(results: dict) -> None:
    rows = results["rows"]
    header = (f"{'model':34} {'params':>8} {'GF/img':>7} {'img/s':>9} {'ms/step':>9} "
              f"{'TFLOP/s':>8} {'peakGiB':>8}  path")
    print(header)
    for r in rows:
        mem = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        print(f"{r['label']:34} {r['params_m']:7.2f}M {r['train_gflop_per_image']:7.2f} "
              f"{r['images_per_s']:9.1f} {r['step_ms_median']:9.2f} {r['tflops']:8.3f} "
              f"{mem:>8}  {r['path']}")
    for label, entry in results["ratios"].items():
        parts = [f"{k[3:]} x{v:.2f}" for k, v in entry.items() if k.startswith("vs_")
                 and k != "vs_matched_peer"]
        print(f"ratio {label}: " + ", ".join(parts))
    for name, why in results["peers_missing"].items():
        print(f"peer {name} not run: {why}")


def curve_config(args):
    """The mnist-ddpm preset (smaller network off the full size), --batch, no probes."""
    from core.presets import load_preset

    config = load_preset("mnist-ddpm")
    config.train.batch_size = args.batch
    config.train.probe_every = 0
    config.train.device = args.device.split(":")[0]
    config.train.log_every = 20
    if args.size != "full":
        config.model.channels = 16 if args.size == "tiny" else 32
        config.model.channel_mult = (1, 2)
        config.model.num_res_blocks = 1
        config.model.attention_resolutions = ()
    if args.size == "tiny":
        config.train.warmup_steps = min(config.train.warmup_steps, args.loss_curve // 4)
    return config.validate()


def smoothed(values, window: int):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def loss_curve(args) -> dict:
    """Plain fp32 eager against the --ours fast path: same data, seed, model, steps."""
    import copy

    import numpy as np

    from core.data import get_dataset
    from core.fast_train import FastTrainStep, describe_training_path
    from core.training import Trainer

    config = curve_config(args)
    tc = config.train
    dataset = get_dataset(tc.dataset, image_size=tc.image_size, grayscale=tc.grayscale,
                          num_samples=tc.num_samples, seed=tc.seed)
    precision, mode = args.ours[0]
    runs = {}
    for name, (run_precision, run_mode) in (("eager_fp32", ("fp32", "eager")),
                                             ("fast", (precision, mode))):
        trainer = Trainer(copy.deepcopy(config), dataset=dataset, device=args.device)
        FastTrainStep(trainer, path=run_mode, precision=run_precision,
                      compile_mode=args.compile_mode)
        start = time.perf_counter()
        trainer.run(args.loss_curve)
        common.sync(args.device)
        runs[name] = {"path": describe_training_path(trainer),
                      "seconds": round(time.perf_counter() - start, 2),
                      "loss": [round(v, 6) for v in trainer.history["loss"]]}
    reference, fast = (np.asarray(runs[k]["loss"]) for k in ("eager_fp32", "fast"))
    window = max(10, args.loss_curve // 20)
    ref_s, fast_s = smoothed(reference, window), smoothed(fast, window)
    # noise of a window mean: the spread of the loss around its smoothed curve / sqrt(window)
    residual = reference[window // 2: window // 2 + len(ref_s)] - ref_s
    noise = float(np.std(residual) / math.sqrt(window))
    difference = np.abs(fast_s - ref_s)
    tail = slice(len(ref_s) // 2, None)
    results = {
        "benchmark": "loss_curve", "steps": args.loss_curve, "window": window,
        "config": config.to_dict(), "env": common.env_info(args.device), "runs": runs,
        "max_smoothed_difference": round(float(difference.max()), 6),
        "mean_smoothed_difference_second_half": round(float(difference[tail].mean()), 6),
        "window_mean_noise": round(noise, 6),
        "difference_over_noise_second_half": (round(float(difference[tail].mean()) / noise, 3)
                                              if noise > 0 else math.nan),
        "final_window_loss": {"eager_fp32": round(float(ref_s[-1]), 5),
                              "fast": round(float(fast_s[-1]), 5)},
    }
    print(f"loss curves over {args.loss_curve} steps ({window}-step means): "
          f"eager fp32 {results['final_window_loss']['eager_fp32']:.4f} vs fast "
          f"{results['final_window_loss']['fast']:.4f} at the end; mean |difference| in the "
          f"second half {results['mean_smoothed_difference_second_half']:.4g} = "
          f"{results['difference_over_noise_second_half']:.2f} x the noise of a window mean")
    for name, run in runs.items():
        print(f"  {name}: {run['path']}, {run['seconds']} s")
    if args.plot:
        plot_curves(runs, window, args.plot)
    return results


def plot_curves(runs: dict, window: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for (name, run), color in zip(runs.items(), ("tab:blue", "tab:orange"), strict=False):
        loss = run["loss"]
        ax.plot(range(1, len(loss) + 1), loss, color=color, alpha=0.2, linewidth=0.6)
        mean = smoothed(loss, window)
        ax.plot(range(window, len(loss) + 1), mean, color=color, linewidth=1.5,
                label=f"{name}: {run['path'].split(' [')[0]}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.setup_torch(args.device, args.threads, not args.no_cudnn_benchmark)
    if args.loss_curve:
        results = loss_curve(args)
        common.write_json(args.json, results)
        return results
    modules, missing = common.load_peers(args.peers)
    env = common.env_info(args.device)
    variants: list[Variant] = []
    for match in args.match:
        for precision, mode in args.ours:
            baseline = common.reset_peak_memory(args.device)
            variants.append(build_ours(match, precision, mode, args))
            warm_up(variants[-1], args, baseline)
    for name in args.peers:
        if name not in modules:
            continue
        for precision in args.peer_precisions:
            baseline = common.reset_peak_memory(args.device)
            variants.append(build_peer(name, precision, args, modules))
            warm_up(variants[-1], args, baseline)
    per_round = [args.steps // args.rounds + (1 if i < args.steps % args.rounds else 0)
                 for i in range(args.rounds)]
    for index, count in enumerate(per_round):
        shift = index % max(len(variants), 1)          # rotate the order every round
        for variant in variants[shift:] + variants[:shift]:
            if count:
                times, wall = common.time_steps(variant.step, count, args.device)
                variant.times.extend(times)
                variant.wall_s += wall
    for variant in variants:
        variant.final_loss = float(variant.finish())
    rows = [summarize(v, args.batch) for v in variants]
    results = {
        "benchmark": "train_throughput",
        "config": {"device": args.device, "size": args.size, "batch": args.batch,
                   "image": common.SIZES[args.size]["image"], "T": common.SIZES[args.size]["T"],
                   "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                   "ours": [f"{p}:{m}" for p, m in args.ours], "compile_mode": args.compile_mode,
                   "peer_precisions": args.peer_precisions,
                   "argv": list(sys.argv[1:] if argv is None else argv)},
        "env": env, "rows": rows, "ratios": ratios(rows), "peers_missing": missing,
        "load_average_after": [round(v, 2) for v in __import__("os").getloadavg()],
    }
    print_table(results)
    common.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
