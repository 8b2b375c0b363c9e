"""What every command of the CLI shares: exit codes, the one-line usage error, the parser
that reports it, and argument types that bound numbers and name the flag."""

from __future__ import annotations

import argparse
import math

EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
MAX_SEED = 2**63 - 1


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high] (argparse names the flag on failure)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low:,} to {high:,}, "
                                             f"got {value:,}")
        return value
    return parse


def bounded_float(low: float, high: float):
    """An argparse type: a finite number in [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, "
                                             f"got {text}")
        return value
    return parse


def add_threads(parser) -> None:
    parser.add_argument("--threads", type=bounded_int(1, 256),
                        help="CPU threads for torch (default: 1 on machines with up to 4 cores, "
                             "where more make small models much slower; torch's choice, one "
                             "per core, on bigger ones)")


def check_positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value}")


def training_data(path, checkpoint):
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
