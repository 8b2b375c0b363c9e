"""`python -m core train`: train from a preset or a config and write one checkpoint."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

from core.cli.common import (
    EXIT_INTERRUPTED,
    UsageError,
    add_threads,
    check_writable,
    limited_int,
)

TEST_DUMP_ENV = "DIFFUSION_EXPLORER_TEST_DUMP_DIR"   # tests: every rank dumps its final weights


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model and write a checkpoint",
                                description="Train from a preset or a JSON config and write one "
                                "checkpoint file. Under torchrun each rank trains on its shard "
                                "of the data (DistributedDataParallel); rank 0 writes the file.")
    add_threads(train)
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a preset name (e.g. toy-2d, mnist-ddpm, digits)")
    source.add_argument("--config", help="an ExperimentConfig JSON file")
    train.add_argument("--steps", type=limited_int("train.steps"),
                       help="total optimizer steps (overrides the config)")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config)")
    train.add_argument("--seed", type=limited_int("train.seed"),
                       help="random seed (overrides the config)")
    train.add_argument("--out", required=True, help="checkpoint file to write")
    train.add_argument("--resume", action="store_true",
                       help="continue from --out when it exists (its own config is used)")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out")
    train.add_argument("--micro-batch", type=limited_int("train.micro_batch"),
                       help="examples per forward/backward pass: the batch in chunks with "
                            "gradient accumulation (same gradient, less memory; must divide "
                            "the batch size; 0: the whole batch; overrides the config)")
    train.add_argument("--checkpointing", action="store_true",
                       help="activation checkpointing of the UNet's res blocks: much less "
                            "memory for ~30%% more compute (sets model.checkpointing)")


def run(args) -> int:
    from core import distributed
    from core.checkpoint import save_checkpoint, trainer_from_checkpoint
    from core.config import ConfigError, ExperimentConfig
    from core.presets import load_preset
    from core.training import Trainer, TrainingDiverged

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a checkpoint file name")
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
        if args.micro_batch is not None:
            config.train.micro_batch = args.micro_batch
        if args.checkpointing:
            config.model.checkpointing = True
        try:
            config.check_trainable()
        except ConfigError as exc:
            raise (exc.in_file(args.config) if args.config else exc) from None
    if not out.parent.is_dir():
        raise UsageError(f"--out: the folder {out.parent} does not exist")
    check_writable("--out", out)       # now, not after the whole run

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
            _resume_memory_aids(trainer, args)
            say(f"resuming {out} at step {trainer.step}")
        else:
            trainer = _with_memory_advice(lambda: Trainer(config, device=device), config)
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
                status = _with_memory_advice(
                    lambda chunk=chunk: trainer.run(chunk, on_metrics=progress.update,
                                                    should_stop=stop.poller(trainer)),
                    trainer.config, trainer)
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


def _resume_memory_aids(trainer, args) -> None:
    """--micro-batch and --checkpointing apply to a resumed run too (they change no number)."""
    from core.config import ConfigError

    tc = trainer.config.train
    if args.micro_batch is not None:
        if args.micro_batch and tc.batch_size % args.micro_batch:
            raise ConfigError("train.micro_batch", args.micro_batch,
                              f"must divide train.batch_size ({tc.batch_size})")
        tc.micro_batch = args.micro_batch
    if args.checkpointing:
        trainer.config.model.checkpointing = True
        for network in (trainer.model, trainer.ema_model):
            if hasattr(network, "set_checkpointing"):
                network.set_checkpointing(True)


def _with_memory_advice(work, config, trainer=None):
    """work(); an out-of-memory error leaves with advice naming the batch, the model size
    and the memory aids (core.oom.training_oom_advice; the CLI prints it as a hint)."""
    from core.oom import is_out_of_memory, training_oom_advice

    try:
        return work()
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        if trainer is not None:
            parameters = sum(p.numel() for p in trainer.model.parameters())
            device = str(trainer.device)
        else:
            parameters, device = _parameters_of(config), ""
        exc.advice = training_oom_advice(config.train.batch_size, parameters,
                                         config.train.micro_batch, config.model.checkpointing,
                                         device)
        raise


def _parameters_of(config) -> int:
    """The model's parameter count, from a copy built on the meta device (no memory)."""
    import torch

    from core.build import dataset_from_config, model_from_config, model_num_classes

    try:
        dataset = dataset_from_config(config)
        with torch.device("meta"):
            model = model_from_config(config, dataset.shape, model_num_classes(config, dataset))
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - advice only: a count we cannot make is not an error
        return 0


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


