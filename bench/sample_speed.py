"""Sampling speed: DDPM-1000 and DDIM-50 for 64 images at 32x32, ours against the peers.

Ours: core.sampling.FastSampler (one reverse step captured as a CUDA graph and replayed for
every t on a GPU; eager elsewhere) on our UNet matched to each peer (bench/_bench_common.py).
Peers (when installed): sampled exactly as shared/reference/peer_bench.py does it
(lucidrains: GaussianDiffusion.sample with DDPM or DDIM; diffusers: the DDPMScheduler /
DDIMScheduler loop of its pipelines). Every model runs under the same precision (bf16
autocast on a GPU as in peer_bench.py, fp32 on the CPU by default) and inference mode.
Per model: a short warm-up, one DDPM run, then the median of --ddim-repeats DDIM runs;
models alternate. Weights are random (speed does not depend on them).

    python bench/sample_speed.py                      # GPU: 64 images, DDPM-1000, DDIM-50
    python bench/sample_speed.py --tiny               # CPU smoke test (T=20, DDIM-5, 2 images)

Options: --device, --tiny, --size, --images, --ddim-steps, --ddim-repeats, --precision,
--mode eager|graph|compile+graph|compile|auto, --peers NAMES|none, --threads, --json PATH.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_common as common  # noqa: E402
import torch  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (smoke test)")
    p.add_argument("--size", choices=("tiny", "small", "full"), default=None)
    p.add_argument("--images", type=int, default=None, help="batch to sample (default 64, tiny 2)")
    p.add_argument("--ddim-steps", type=int, default=None, help="default 50 (tiny 5)")
    p.add_argument("--ddim-repeats", type=int, default=3)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--mode", default="auto",
                   choices=("auto", "eager", "graph", "compile", "compile+graph"))
    p.add_argument("--match", default="lucidrains,diffusers")
    p.add_argument("--peers", default="lucidrains,diffusers", help="peers to run, or none")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.device = common.resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    cuda = args.device.startswith("cuda")
    # DDPM-1000 on 64 images takes hours on a CPU: the CPU default is the tiny size
    args.size = args.size or ("full" if cuda and not args.tiny else "tiny")
    tiny = args.size == "tiny"
    args.images = args.images or (2 if tiny else 64)
    args.T = common.SIZES[args.size]["T"]
    args.ddpm_steps = args.T          # lucidrains' ancestral sampler always walks all T steps
    args.ddim_steps = args.ddim_steps or (5 if tiny else 50)
    args.precision = ("bf16" if cuda else "fp32") if args.precision == "auto" else args.precision
    args.mode = ("graph" if cuda else "eager") if args.mode == "auto" else args.mode
    args.peers = [] if args.peers in ("", "none") else [s for s in args.peers.split(",") if s]
    args.match = [s for s in args.match.split(",") if s]
    for name in args.peers + args.match:
        if name not in common.PEER_NAMES:
            p.error(f"unknown peer {name!r}: choose from {', '.join(common.PEER_NAMES)}")
    if not 1 <= args.ddim_steps <= args.T:
        p.error(f"--ddim-steps must lie in [1, {args.T}]")
    return args


# ---------------------------------------------------------------------------- ours
def build_ours(match: str, args) -> dict:
    from core.build import diffusion_from_config
    from core.models import build_model
    from core.sampling import FastSampler

    config = common.our_config(match, args.size, args.images, args.device, 10)
    image = common.SIZES[args.size]["image"]
    torch.manual_seed(0)
    model = build_model(config.model, (3, image, image), None, learn_sigma=False)
    model = model.to(args.device).eval().requires_grad_(False)
    if args.device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
    diffusion = diffusion_from_config(config, "image")
    shape = (args.images, 3, image, image)
    samplers = {
        kind: FastSampler(model, diffusion, shape, sampler=kind, steps=steps, device=args.device,
                          path=args.mode, precision=args.precision)
        for kind, steps in (("ddpm", args.ddpm_steps), ("ddim", args.ddim_steps))
    }

    def run(kind: str):
        generator = torch.Generator(device=args.device).manual_seed(0)
        return samplers[kind].sample(generator=generator)

    def warm_up():
        for sampler in samplers.values():
            sampler.warm_up()

    return {"label": f"ours~{match}", "kind": "ours", "family": match, "run": run,
            "warm_up": warm_up, "params": common.parameter_count(model),
            "path": lambda: "; ".join(f"{k}: {s.describe()}" for k, s in samplers.items())}


# ---------------------------------------------------------------------------- peers
def build_peer(name: str, args, modules) -> dict:
    """peer_bench.py's bench_sample: lucidrains' sample(), diffusers' scheduler loop."""
    peer = common.build_peer(name, args.size, args.device, modules)
    peer["loss_mod"].eval()
    image = common.SIZES[args.size]["image"]
    batch, T = args.images, args.T
    precision, device = args.precision, args.device
    if name == "lucidrains":
        diff = peer["diff"]

        def run(kind: str, steps: int):
            if kind == "ddpm":
                diff.sampling_timesteps, diff.is_ddim_sampling = T, False
            else:
                diff.sampling_timesteps, diff.is_ddim_sampling = steps, True
            with torch.inference_mode(), common.amp(device, precision):
                return diff.sample(batch_size=batch)
    else:
        lib = modules["diffusers"]
        ddpm = lib.DDPMScheduler(num_train_timesteps=T)
        unet = peer["net"]

        def run(kind: str, steps: int):
            if kind == "ddpm":
                scheduler = lib.DDPMScheduler.from_config(ddpm.config)
                scheduler.set_timesteps(steps)
            else:
                scheduler = lib.DDIMScheduler.from_config(ddpm.config)
                scheduler.set_timesteps(steps)
            with torch.inference_mode(), common.amp(device, precision):
                x = torch.randn(batch, 3, image, image, device=device)
                for t in scheduler.timesteps:  # as DDPMPipeline/DDIMPipeline: CPU t each step
                    eps = unet(x, t).sample
                    x = scheduler.step(eps, t, x).prev_sample
                return x

    def run_kind(kind: str):
        return run(kind, args.ddpm_steps if kind == "ddpm" else args.ddim_steps)

    return {"label": name, "kind": "peer", "family": name, "run": run_kind,
            "warm_up": lambda: run("ddim", min(3, T)),
            "params": common.parameter_count(peer["net"]),
            "path": lambda: "eager (peer_bench.py sampling)"}


# ---------------------------------------------------------------------------- timing
def timed(fn, device: str):
    common.sync(device)
    start = time.perf_counter()
    out = fn()
    common.sync(device)
    return time.perf_counter() - start, out


def measure(entry: dict, args) -> dict:
    baseline = common.reset_peak_memory(args.device)
    entry["warm_up"]()
    ddpm_s, out = timed(lambda: entry["run"]("ddpm"), args.device)
    ddpm_finite = bool(torch.isfinite(out.float()).all())
    ddim = []
    for _ in range(args.ddim_repeats):
        seconds, out = timed(lambda: entry["run"]("ddim"), args.device)
        ddim.append(seconds)
    return {
        "label": entry["label"], "kind": entry["kind"], "family": entry["family"],
        "params_m": round(entry["params"] / 1e6, 3), "path": entry["path"](),
        "images": args.images, "ddpm_steps": args.ddpm_steps, "ddpm_s": round(ddpm_s, 4),
        "ddpm_ms_per_step": round(ddpm_s / args.ddpm_steps * 1e3, 3),
        "ddim_steps": args.ddim_steps, "ddim_s_median": round(statistics.median(ddim), 4),
        "ddim_s_all": [round(s, 4) for s in ddim],
        "ddim_ms_per_step": round(statistics.median(ddim) / args.ddim_steps * 1e3, 3),
        "finite": ddpm_finite and bool(torch.isfinite(out.float()).all()),
        "peak_memory_gib": common.peak_memory_gib(args.device, baseline),
    }


def ratios(rows: list[dict]) -> dict:
    """Our time over each peer's (and the faster peer's) time; lower is better."""
    peers = {r["family"]: r for r in rows if r["kind"] == "peer"}
    out = {}
    for row in rows:
        if row["kind"] != "ours" or not peers:
            continue
        entry = {}
        for key in ("ddpm_s", "ddim_s_median"):
            fastest = min(peers.values(), key=lambda r: r[key])
            entry[f"{key}_vs_faster_peer"] = round(row[key] / fastest[key], 3)
            for name, peer in peers.items():
                entry[f"{key}_vs_{name}"] = round(row[key] / peer[key], 3)
        out[row["label"]] = entry
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.setup_torch(args.device, args.threads)
    modules, missing = common.load_peers(args.peers)
    env = common.env_info(args.device)
    entries = []
    for match in args.match:
        entries.append(build_ours(match, args))
        if match in args.peers and match in modules:
            entries.append(build_peer(match, args, modules))
    for name in args.peers:
        if name in modules and name not in args.match:
            entries.append(build_peer(name, args, modules))
    rows = [measure(entry, args) for entry in entries]
    results = {
        "benchmark": "sample_speed",
        "config": {"device": args.device, "size": args.size, "images": args.images,
                   "T": args.T, "ddpm_steps": args.ddpm_steps, "ddim_steps": args.ddim_steps,
                   "ddim_repeats": args.ddim_repeats, "precision": args.precision,
                   "mode": args.mode, "argv": list(sys.argv[1:] if argv is None else argv)},
        "env": env, "rows": rows, "ratios": ratios(rows), "peers_missing": missing,
    }
    print(f"{'model':16} {'params':>8} {'DDPM s':>9} {'ms/step':>8} {'DDIM s':>9} "
          f"{'ms/step':>8}  path")
    for r in rows:
        print(f"{r['label']:16} {r['params_m']:7.2f}M {r['ddpm_s']:9.3f} {r['ddpm_ms_per_step']:8.2f} "
              f"{r['ddim_s_median']:9.3f} {r['ddim_ms_per_step']:8.2f}  {r['path']}")
    for label, entry in results["ratios"].items():
        print(f"time ratio {label}: DDPM x{entry['ddpm_s_vs_faster_peer']:.2f}, DDIM "
              f"x{entry['ddim_s_median_vs_faster_peer']:.2f} of the faster peer (lower is better)")
    for name, why in missing.items():
        print(f"peer {name} not run: {why}")
    if not all(math.isfinite(r["ddpm_s"]) for r in rows):
        raise SystemExit("a timing is not finite")
    common.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
