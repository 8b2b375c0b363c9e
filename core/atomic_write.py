"""Write a file so that a crash leaves either the old file or the new one, never a part.

The new content goes to a temp file inside a hidden folder ".NAME.saving-PID-RANDOM" beside
the target (so nothing a killed write leaves behind looks like the real file), is fsynced,
moved over the target with os.replace, and the folder is fsynced. The next write to the same
name removes such folders of processes that no longer run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


class AtomicWriteError(OSError):
    """The write failed; `problem` in the OS's words, `existed`: the previous file there is
    unchanged (else nothing was written)."""

    def __init__(self, path: Path, problem: str, existed: bool):
        self.path, self.problem, self.existed = path, problem, existed
        super().__init__(problem)


def write_atomically(path: Path, write: Callable[[Path], None],
                     errors: tuple[type[BaseException], ...] = ()) -> None:
    """write(temp_path) fills a temp file; then it replaces `path` atomically. OSError and
    `errors` raised while writing become AtomicWriteError. The caller checks that the folder
    exists and that `path` is not a folder."""
    directory = path.parent if str(path.parent) else Path(".")
    existed = path.exists()
    temp_dir = directory / f".{path.name}.saving-{os.getpid()}-{secrets.token_hex(4)}"
    temp = temp_dir / path.name
    try:
        temp_dir.mkdir()
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_directory(directory)
    except (OSError, *errors) as exc:
        raise AtomicWriteError(path, write_problem(exc), existed) from None
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    remove_stale_temp_dirs(directory, path.name)


def write_problem(exc: BaseException) -> str:
    """The OS's words for a failed write; safetensors reports them as "... (os error N)"."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    match = re.search(r"os error (\d+)", str(exc))
    return os.strerror(int(match.group(1))) if match else str(exc)


def remove_stale_temp_dirs(directory: Path, name: str) -> None:
    """Delete the temp folders of writes to `name` whose process died (killed mid-write)."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.{re.escape(name)}\.saving-(\d+)-[0-9a-f]+")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue                      # still running: maybe writing right now
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue                      # another user's live process


def fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
