"""What every command of the CLI shares: exit codes, the one-line usage error, the parser
that reports it, argument types that bound numbers and name the flag, and the checks and
atomic writes of output files."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
MAX_SEED = 2**63 - 1


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class RunFailed(Exception):
    """The command was fine but the run failed (exit code 1), e.g. non-finite samples."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high] (argparse names the flag on failure)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value {_short(text)} (expected an "
                                             f"integer from {low:,} to {high:,})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low:,} to {high:,}, "
                                             f"got {_short(f'{value:,}')}")
        return value
    return parse


def bounded_float(low: float, high: float):
    """An argparse type: a finite number in [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value {_short(text)} (expected a "
                                             f"number from {low:g} to {high:g})") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, "
                                             f"got {_short(text)}")
        return value
    return parse


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def limited_int(name: str):
    """bounded_int over core.config.LIMITS[name] (e.g. "sampling.n")."""
    from core.config import LIMITS

    low, high = LIMITS[name]
    return bounded_int(int(low), int(high))


def limited_float(name: str):
    """bounded_float over core.config.LIMITS[name] (e.g. "sampling.guidance")."""
    from core.config import LIMITS

    low, high = LIMITS[name]
    return bounded_float(float(low), float(high))


def add_threads(parser) -> None:
    parser.add_argument("--threads", type=bounded_int(1, 256),
                        help="CPU threads for torch (default: 1 on machines with up to 4 cores, "
                             "where more make small models much slower; torch's choice, one "
                             "per core, on bigger ones)")


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


# ---------------------------------------------------------------------- output files
def check_output(flag: str, value: str, force: bool) -> Path:
    """The path of an output flag, checked before any work: its folder exists, it is not a
    folder, and it does not exist (a symlink, even a broken one, counts) unless --force."""
    path = Path(value)
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {value}: the folder {folder} does not exist")
    if path.is_dir():
        raise UsageError(f"{flag} {value}: is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise UsageError(f"{flag} {value}: exists; pass --force to overwrite it")
    return path


def check_writable(flag: str, path: Path) -> None:
    """Create and remove a temp file beside `path`, so an unwritable target is refused at
    the start of a run instead of at its end."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.check-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in the folder {folder} "
                         f"({exc.strerror or exc})") from None


def write_output(flag: str, path: Path, write: Callable[[Path], None]) -> None:
    """write(temp) fills a temp file that then replaces `path` atomically (core.atomic_write:
    a symlink at `path` is replaced, never written through). A failed write is RunFailed
    naming the flag, the path and whether a previous file there is unchanged."""
    from core.atomic_write import AtomicWriteError, write_atomically

    try:
        write_atomically(path, write, errors=(ValueError,))
    except AtomicWriteError as exc:
        kept = "the previous file there is unchanged" if exc.existed else "nothing was written"
        raise RunFailed(f"{flag} {path}: cannot be written ({exc.problem}); {kept}") from None
