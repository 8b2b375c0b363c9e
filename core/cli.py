"""Headless command line: `python -m core train|sample|evaluate` (see `--help` of each).

Errors print one line `error: ...` on stderr, never a traceback: exit code 2 for bad
arguments, settings, data or checkpoints, 1 for failures while running (divergence, I/O),
130 after Ctrl-C (training saves its checkpoint first).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import core.samplers as sampler_registry
from core.samplers.base import VARIANCE

EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
OOM_ADVICE = ("out of memory: lower train.batch_size or the model size (model.channels, "
              "model.hidden) in the config, sample fewer at once (--n, --batch-size), or choose "
              "another --device")
TEST_DUMP_ENV = "DIFFUSION_EXPLORER_TEST_DUMP_DIR"   # tests: every rank dumps its final weights


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Train, sample and evaluate diffusion "
                     "models without the app.")
    commands = parser.add_subparsers(dest="command", metavar="{train,sample,evaluate}",
                                     parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train a model and write a checkpoint",
                                description="Train from a preset or a JSON config and write one "
                                "checkpoint file. Under torchrun each rank trains on its shard "
                                "of the data (DistributedDataParallel); rank 0 writes the file.")
    _add_threads(train)
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a preset name (e.g. toy-2d, mnist-ddpm, digits)")
    source.add_argument("--config", help="an ExperimentConfig JSON file")
    train.add_argument("--steps", type=int, help="total optimizer steps (overrides the config)")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config)")
    train.add_argument("--seed", type=int, help="random seed (overrides the config)")
    train.add_argument("--out", required=True, help="checkpoint file to write")
    train.add_argument("--resume", action="store_true",
                       help="continue from --out when it exists (its own config is used)")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out")

    smp = commands.add_parser("sample", help="draw samples from a checkpoint",
                              description="Sample with the EMA weights of a checkpoint; write a "
                              "PNG (image grid or 2-D scatter) and/or the samples as .npy.")
    _add_threads(smp)
    smp.add_argument("--checkpoint", required=True)
    smp.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    samplers = sampler_registry.samplers()
    smp.add_argument("--sampler", choices=[spec.name for spec in samplers],
                     default=sampler_registry.DEFAULT_SAMPLER,
                     help="; ".join(f"{spec.name}: {spec.label}" for spec in samplers)
                          + f" (default {sampler_registry.DEFAULT_SAMPLER})")
    smp.add_argument("--steps", type=int, help="sampling steps (default: the sampler's, e.g. "
                     "all T for ddpm, 50 for ddim)")
    smp.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale w")
    smp.add_argument("--label", type=int, help="class to sample (class-conditional models)")
    smp.add_argument("--seed", type=int, default=0)
    for option in sampler_registry.all_options().values():
        users = ", ".join(spec.name for spec in samplers if option in spec.options)
        if option.kind == "choice":
            smp.add_argument(f"--{option.name}", choices=[v for v, _ in option.choices],
                             default=None, help=f"{option.help} (for {users}; default "
                             f"{option.default})")
        else:
            smp.add_argument(f"--{option.name}", type=float, default=None,
                             help=f"{option.help} (for {users}; {option.low:g} to "
                                  f"{option.high:g}, default {option.default:g})")
    smp.add_argument("--device", default="auto")
    smp.add_argument("--out", help="PNG file: an image grid, or a scatter plot for 2-D data")
    smp.add_argument("--npy", help=".npy file of the final samples in data space")

    ev = commands.add_parser("evaluate", help="NLL bound and sample quality as one JSON object",
                             description="Evaluate the EMA weights of a checkpoint on its data "
                             "set's test split: the variational bound (bits/dim for images, "
                             "nats/dim for vectors) and, for 2-D toys with a density, the mean "
                             "log-likelihood of generated samples next to the data's own.")
    _add_threads(ev)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--n", type=int, default=128, help="test examples for the bound (default 128)")
    ev.add_argument("--samples", type=int, default=2000,
                    help="samples for the 2-D log-likelihood (default 2000)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--variance", choices=[value for value, _ in VARIANCE.choices],
                    default=VARIANCE.default,
                    help="reverse-step variance for the bound and the samples: the model's "
                         "(default) or Analytic-DPM's sigma*^2")
    ev.add_argument("--device", default="auto")
    return parser


def _add_threads(parser) -> None:
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default: torch's choice, one per core; "
                             "1 is often faster for small models or on a busy machine)")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:            # --help
        return int(exc.code or 0)
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE)

    from core.checkpoint import CheckpointError, CheckpointWriteError
    from core.config import ConfigError
    from core.data import DataError
    from core.oom import is_out_of_memory
    from core.training import TrainingDiverged

    try:
        if args.threads is not None:
            _check_positive("--threads", args.threads)
            import torch
            torch.set_num_threads(args.threads)
        return {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate}[args.command](args)
    except CheckpointWriteError as exc:  # disk full and the like: the run, not the command
        return _fail(exc, EXIT_RUNTIME)
    except (UsageError, ConfigError, DataError, CheckpointError, ValueError) as exc:
        return _fail(exc, EXIT_USAGE)
    except (TrainingDiverged, OSError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            return _fail(exc, EXIT_RUNTIME, OOM_ADVICE)
        return _fail(exc, EXIT_RUNTIME)
    except MemoryError as exc:
        return _fail(exc, EXIT_RUNTIME, OOM_ADVICE)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(exc: BaseException, code: int, advice: str = "") -> int:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr)
    if advice:
        print(f"hint: {advice}", file=sys.stderr)
    return code


def _check_positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value}")


# ---------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from core import distributed
    from core.checkpoint import save_checkpoint, trainer_from_checkpoint
    from core.config import ConfigError, ExperimentConfig
    from core.presets import load_preset
    from core.training import Trainer, TrainingDiverged

    _check_positive("--steps", args.steps)
    out = Path(args.out)
    resuming = args.resume and out.exists()
    if not resuming:
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists; pass --resume to continue it or --force to overwrite it")
        if not args.preset and not args.config:
            raise UsageError("give --preset NAME or --config FILE")
        config = load_preset(args.preset) if args.preset else ExperimentConfig.load(args.config)
        if args.seed is not None:
            config.train.seed = args.seed
        if args.device is not None:
            config.train.device = args.device
        if args.steps is not None:
            config.train.steps = args.steps
        try:
            config.validate()
        except ConfigError as exc:
            raise (exc.in_file(args.config) if args.config else exc) from None
    if not out.parent.is_dir():
        raise UsageError(f"--out: the folder {out.parent} does not exist")

    device = None
    if distributed.launched_by_torchrun():
        device = distributed.init_from_env(args.device or "auto")
    main_rank = distributed.is_main_process()
    say = _printer(main_rank)
    try:
        if resuming:
            if args.preset or args.config:
                say(f"note: resuming {out} with its own config; --preset/--config ignored")
            trainer = trainer_from_checkpoint(out, device=device or args.device)
            if args.steps is not None:
                trainer.config.train.steps = args.steps
            say(f"resuming {out} at step {trainer.step}")
        else:
            trainer = Trainer(config, device=device)
        total = trainer.config.train.steps
        say(f"training {trainer.config.name!r} on {trainer.dataset.name} "
            f"({trainer.device}, world size {trainer.world_size}) to step {total}")

        stop = _StopFlag()
        progress = _Progress(trainer, total, enabled=main_rank)
        every = trainer.config.train.checkpoint_every
        status = "finished"
        try:
            while trainer.step < total and status == "finished":
                chunk = total - trainer.step
                if every > 0:
                    chunk = min(chunk, every - trainer.step % every)
                status = trainer.run(chunk, on_metrics=progress.update,
                                     should_stop=stop.poller(trainer))
                if main_rank and (status == "stopped" or trainer.step < total):
                    save_checkpoint(out, trainer)
        except TrainingDiverged:
            progress.end()
            if main_rank:           # the last good state, so a retry can start from it
                save_checkpoint(out, trainer)
            raise
        finally:
            stop.restore()
        progress.end()
        if main_rank:
            save_checkpoint(out, trainer)
        _dump_weights_for_tests(trainer)
        distributed.barrier()
        if status == "stopped":
            say(f"stopped at step {trainer.step}; saved {out} (continue with --resume)")
            return EXIT_INTERRUPTED
        say(f"done: step {trainer.step}, saved {out}")
        return 0
    finally:
        distributed.shutdown()


def _printer(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(message, file=sys.stderr, flush=True)
    return say


class _StopFlag:
    """Ctrl-C / SIGTERM set a flag that the trainer polls between steps."""

    def __init__(self):
        self.requested = False
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:       # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.requested:           # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def poller(self, trainer):
        """should_stop for Trainer.run; under DDP the ranks agree every log_every steps."""
        from core import distributed
        if trainer.world_size == 1:
            return lambda: self.requested
        every = trainer.config.train.log_every

        def poll() -> bool:
            if trainer.step % every:
                return False
            return distributed.any_rank(self.requested, trainer.device)
        return poll

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Progress:
    """A progress line on stderr: step, loss, samples/s, ETA (redrawn in place on a terminal)."""

    def __init__(self, trainer, total: int, enabled: bool):
        self.trainer, self.total, self.enabled = trainer, total, enabled
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.drawn = False

    def update(self, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        now = time.monotonic()
        last = rows[-1]
        final = last["step"] >= self.total
        if now - self.last_print < (0.2 if self.tty else 5.0) and not final:
            return
        self.last_print = now
        rate = last["samples_per_sec"]
        steps_per_sec = rate / (self.trainer.batch_size * self.trainer.world_size)
        eta = (self.total - last["step"]) / steps_per_sec if steps_per_sec > 0 else float("nan")
        loss = sum(r["loss"] for r in rows) / len(rows)
        line = (f"step {last['step']}/{self.total}  loss {loss:.4f}  {rate:,.0f} samples/s  "
                f"ETA {_duration(eta)}")
        if self.tty:
            sys.stderr.write("\r" + line.ljust(78))
            self.drawn = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _dump_weights_for_tests(trainer) -> None:
    directory = os.environ.get(TEST_DUMP_ENV)
    if not directory:
        return
    from safetensors.torch import save_file
    state = {k: v.detach().cpu().contiguous().clone() for k, v in trainer.model.state_dict().items()}
    save_file(state, str(Path(directory) / f"rank{trainer.rank}.safetensors"))


# ---------------------------------------------------------------------- sample
def cmd_sample(args) -> int:
    from core.checkpoint import load_checkpoint
    from core.config import ConfigError, SamplingConfig
    from core.device import resolve_device
    from core.generate import sample

    _check_positive("--n", args.n)
    _check_positive("--steps", args.steps)
    if not args.out and not args.npy:
        raise UsageError("give --out FILE.png and/or --npy FILE.npy")
    for option, value in (("--out", args.out), ("--npy", args.npy)):
        if value and not Path(value).parent.is_dir():
            raise UsageError(f"{option}: the folder {Path(value).parent} does not exist")
    spec = sampler_registry.get_sampler(args.sampler)
    options = {}
    for name in sampler_registry.all_options():
        value = getattr(args, name)
        if value is None:
            continue
        if name not in spec.option_names() and value != sampler_registry.all_options()[name].default:
            raise UsageError(f"--{name} is not an option of --sampler {spec.name}; "
                             f"{spec.name} takes " + (", ".join(f"--{o}" for o in spec.option_names())
                                                      or "no options"))
        options[name] = value
    request = SamplingConfig(sampler=spec.name, steps=args.steps, n=args.n, seed=args.seed,
                             guidance=args.guidance, label=args.label, options=options)
    try:
        request.validate()
    except ConfigError as exc:
        raise UsageError(f"--{exc.field.split('.', 1)[1]}: {exc.allowed}") from None
    chosen = request.sampler_options()
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model(ema=True, device=device)
    analytic = None
    if chosen.get(VARIANCE.name) == "analytic":
        from core.analytic_dpm import gamma_sample

        analytic = gamma_sample(_training_data(args.checkpoint, checkpoint).train, seed=args.seed)
    trajectory = sample(model, checkpoint.build_diffusion(), args.n, checkpoint.data_shape,
                        sampler=spec.name, steps=args.steps, options=chosen,
                        guidance=args.guidance, label=args.label,
                        num_classes=checkpoint.num_classes, seed=args.seed,
                        record_every=10**9, data_box=checkpoint.data_box,
                        analytic_data=analytic, device=device)
    if args.npy:
        np.save(args.npy, trajectory.final)
        print(f"wrote {args.npy} {trajectory.final.shape}", file=sys.stderr)
    if args.out:
        if trajectory.kind == "image":
            picture = image_grid(trajectory.final_uint8)
        elif trajectory.final.shape[1] == 2:
            picture = scatter_plot(trajectory.final)
        else:
            raise UsageError(f"--out: no picture for {trajectory.final.shape[1]}-D vectors; use --npy")
        picture.save(args.out)
        print(f"wrote {args.out} ({picture.width}x{picture.height})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from core.checkpoint import load_checkpoint
    from core.device import resolve_device
    from core.metrics import nll_bound, sample_log_likelihood

    _check_positive("--n", args.n)
    _check_positive("--samples", args.samples)
    _check_positive("--batch-size", args.batch_size)
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = _training_data(args.checkpoint, checkpoint)
    model = checkpoint.build_model(ema=True, device=device)
    diffusion = checkpoint.build_diffusion()
    if args.variance == "analytic":
        from core.analytic_dpm import analytic_diffusion_from_data, gamma_sample

        diffusion = analytic_diffusion_from_data(
            model, diffusion, gamma_sample(dataset.train, seed=args.seed),
            data_shape=checkpoint.data_shape, num_classes=checkpoint.num_classes,
            seed=args.seed, device=device)
    bound = nll_bound(model, diffusion, dataset.test, n=args.n, batch_size=args.batch_size,
                      num_classes=checkpoint.num_classes, seed=args.seed, device=device)
    key = "bits_per_dim" if bound["unit"] == "bits/dim" else "nats_per_dim"
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset.name,
              "step": checkpoint.step, "kind": checkpoint.data_kind, "variance": args.variance,
              key: bound["mean"], f"{key}_stderr": bound["stderr"], "n": bound["n"],
              "prior_" + key: bound["prior_mean"]}
    if dataset.kind == "vector" and dataset.log_density is not None:
        quality = sample_log_likelihood(model, diffusion, dataset, n=args.samples, seed=args.seed,
                                        device=device, num_classes=checkpoint.num_classes)
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


def _training_data(path, checkpoint):
    """The data set the checkpoint was trained on, rebuilt from its config; a clear error if
    it now has another shape."""
    from core.build import dataset_from_config
    from core.checkpoint import CheckpointError

    dataset = dataset_from_config(checkpoint.config)
    if tuple(dataset.shape) != tuple(checkpoint.data_shape):
        raise CheckpointError(path, f"was trained on data of shape {checkpoint.data_shape}, "
                                    f"but {checkpoint.config.train.dataset!r} now gives "
                                    f"{tuple(dataset.shape)}")
    return dataset


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------- pictures (Pillow)
def image_grid(images: np.ndarray, min_tile: int = 56, padding: int = 2):
    """(N, H, W, C) uint8 -> a PIL image: a near-square grid, tiles scaled up by an integer
    factor (nearest) to at least `min_tile` pixels, `padding` white pixels between tiles."""
    from PIL import Image

    count, height, width, channels = images.shape
    scale = max(1, math.ceil(min_tile / max(height, width)))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tile_h, tile_w = height * scale, width * scale
    mode = "L" if channels == 1 else "RGB"
    canvas = Image.new(mode, (columns * (tile_w + padding) + padding,
                              rows * (tile_h + padding) + padding), color=255 if mode == "L" else (255, 255, 255))
    for index in range(count):
        array = images[index, :, :, 0] if channels == 1 else images[index]
        tile = Image.fromarray(np.ascontiguousarray(array), mode=mode)
        tile = tile.resize((tile_w, tile_h), Image.NEAREST)
        row, column = divmod(index, columns)
        canvas.paste(tile, (padding + column * (tile_w + padding), padding + row * (tile_h + padding)))
    return canvas


def scatter_plot(points: np.ndarray, size: int = 640, radius: float = 1.6):
    """(N, 2) points -> a PIL scatter plot on a square canvas with the axes through 0.

    The view is the square around the points' 0.5-99.5 percentile box plus a margin, so a
    few stray samples do not shrink the picture."""
    from PIL import Image, ImageDraw

    points = np.asarray(points, dtype=np.float64)
    finite = points[np.isfinite(points).all(axis=1)]
    if finite.shape[0] == 0:
        finite = np.zeros((1, 2))
    low, high = np.percentile(finite, 0.5, axis=0), np.percentile(finite, 99.5, axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2 * 1.15, 1e-3)

    def to_pixels(xy):
        unit = (xy - centre + half) / (2 * half)
        return unit[..., 0] * (size - 1), (1 - unit[..., 1]) * (size - 1)

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    zero_x, zero_y = to_pixels(np.zeros(2))
    draw.line([(0, zero_y), (size, zero_y)], fill=(200, 200, 200))
    draw.line([(zero_x, 0), (zero_x, size)], fill=(200, 200, 200))
    xs, ys = to_pixels(finite)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(31, 119, 180))
    return canvas
