"""Does the app slow training? The app's training worker, headless, against the bench loop.

Two trainers of one configuration (our UNet matched to a peer, random images on the device):
- bench: `Trainer._train_step()` in a bare loop, as bench/train_throughput.py times it
  (fast path chosen by --mode, no metrics flush inside the loop);
- worker: the app's `app.workers.TrainWorker` driving `Trainer.run` exactly as the app does
  (the trainer as the app builds it, so its default fast path; metrics read every log_every
  steps, converted to columns and emitted at <= 20 Hz, pause/stop/task polling every step,
  the worker's torch thread count), run in this thread without a window;
- run: `Trainer.run` called directly with no callbacks (the loop without the worker).
After a warm-up run of each, they alternate (in a rotating order) for --rounds rounds of
--steps/--rounds steps;
images/s = steps x batch / wall time (with a device sync at the end of each block). The
figure of merit is worker / bench (target >= 0.90).

    python bench/headless_worker_speed.py                  # GPU, matched to diffusers, batch 128
    python bench/headless_worker_speed.py --tiny           # CPU smoke test

Options: --device, --tiny, --size, --match, --batch, --steps, --rounds, --warmup, --mode,
--log-every, --threads, --json PATH.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_common as common  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--size", choices=("tiny", "small", "full"), default=None)
    p.add_argument("--match", default="diffusers", choices=common.PEER_NAMES)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=60, help="timed steps of each, in all rounds")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=None, help="default 10 (GPU), 3 (CPU)")
    p.add_argument("--mode", default="auto",
                   choices=("auto", "eager", "compile", "graph", "compile+graph"),
                   help="the bench's fast path (the worker's trainer keeps its default)")
    p.add_argument("--log-every", type=int, default=10, help="the worker's train.log_every")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: what the app's worker uses)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.device = common.resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    cuda = args.device.startswith("cuda")
    args.size = args.size or ("tiny" if args.tiny else ("full" if cuda else "small"))
    args.batch = args.batch or {"full": 128, "small": 16, "tiny": 4}[args.size]
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    if args.steps < args.rounds or args.rounds < 1:
        p.error("--steps must be at least --rounds (>= 1)")
    return args


def _qt_application():
    from PySide6.QtCore import QCoreApplication

    return QCoreApplication.instance() or QCoreApplication([])


def main(argv=None) -> dict:
    args = parse_args(argv)
    from app.workers import DEFAULT_TORCH_THREADS, TrainWorker
    from core.fast_train import describe_training_path
    from core.training import Trainer

    threads = args.threads or DEFAULT_TORCH_THREADS
    common.setup_torch(args.device, threads)
    app = _qt_application()  # noqa: F841 - QObjects want an application instance
    total = args.warmup + args.steps + 8
    bench, _ = common.make_our_trainer(args.match, args.size, args.batch, args.device,
                                       mode=args.mode, log_every=total)
    config = common.our_config(args.match, args.size, args.batch, args.device, args.log_every)
    dataset = common.random_images(4 * args.batch, common.SIZES[args.size]["image"])
    worker_trainer = Trainer(config, dataset=dataset, device=args.device)
    run_trainer = Trainer(config, dataset=dataset, device=args.device)

    def bench_block(steps: int) -> None:
        for _ in range(steps):
            bench._train_step()

    def worker_block(steps: int) -> None:
        worker = TrainWorker(lambda: worker_trainer, steps, torch_threads=threads)
        failures = []
        worker.failed.connect(failures.append)
        worker.run()
        if failures:
            raise RuntimeError(f"the training worker failed: {failures[0]}")

    def run_block(steps: int) -> None:
        run_trainer.run(steps)

    blocks = {"bench": bench_block, "worker": worker_block, "run": run_block}
    for block in blocks.values():
        block(args.warmup)
    common.sync(args.device)
    seconds = {name: 0.0 for name in blocks}
    counted = {name: 0 for name in blocks}
    per_round = [args.steps // args.rounds + (1 if i < args.steps % args.rounds else 0)
                 for i in range(args.rounds)]
    names = list(blocks)
    for index, count in enumerate(per_round):
        # the order rotates every round, so no block always follows the same one
        for name in names[index % len(names):] + names[:index % len(names)]:
            block = blocks[name]
            common.sync(args.device)
            start = time.perf_counter()
            block(count)
            common.sync(args.device)
            seconds[name] += time.perf_counter() - start
            counted[name] += count
    bench._flush(None)
    speed = {name: counted[name] * args.batch / seconds[name] for name in blocks}
    results = {
        "benchmark": "headless_worker_speed",
        "config": {"device": args.device, "size": args.size, "match": args.match,
                   "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
                   "warmup": args.warmup, "log_every": args.log_every, "threads": threads,
                   "argv": list(sys.argv[1:] if argv is None else argv)},
        "env": common.env_info(args.device),
        "paths": {"bench": describe_training_path(bench),
                  "worker": describe_training_path(worker_trainer),
                  "run": describe_training_path(run_trainer)},
        "images_per_s": {k: round(v, 2) for k, v in speed.items()},
        "worker_over_bench": round(speed["worker"] / speed["bench"], 4),
        "run_over_bench": round(speed["run"] / speed["bench"], 4),
        "worker_samples_per_sec_logged": round(worker_trainer.history["samples_per_sec"][-1], 2),
        "losses_finite": all(map(lambda v: v == v, (bench.history["loss"][-1],
                                                     worker_trainer.history["loss"][-1]))),
    }
    for name in blocks:
        print(f"{name:7} {speed[name]:10.1f} images/s  ({results['paths'][name]})")
    print(f"worker / bench = {results['worker_over_bench']:.3f} (target >= 0.90); "
          f"run / bench = {results['run_over_bench']:.3f}")
    common.write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
