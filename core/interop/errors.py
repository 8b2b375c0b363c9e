"""The one error of core.interop, and the check that a path is on this machine.

Nothing in core.interop downloads anything: a Hugging Face id or a URL is refused with the
command that fetches it, so the user decides what comes onto their disk.
"""

from __future__ import annotations

import re
from pathlib import Path

DOWNLOAD_HINT = "not a local path; download it first, e.g. with huggingface-cli"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class InteropError(ValueError):
    """A model file or folder (or its flags) cannot be opened or written as asked.

    `source` names the file, folder or flag at fault (e.g. "DIR/unet/config.json" or
    "--model-flags"), `problem` says what is wrong and what would work. str() is one line
    "source: problem". A ValueError, so the CLI reports it as bad input (exit code 2)."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def local_path(path) -> Path:
    """`path` as a Path that exists on this machine; InteropError otherwise.

    A URL or a Hugging Face id ("google/ddpm-cifar10-32") that is not a local folder gets
    DOWNLOAD_HINT with the command that would fetch it; any other missing path is said not
    to exist."""
    text = str(path)
    candidate = Path(text).expanduser()
    if candidate.exists():
        return candidate
    if "://" in text or text.startswith("hf:"):
        raise InteropError(text, f"{DOWNLOAD_HINT} (nothing is downloaded here); save the "
                                 "model to a folder and give that folder")
    if _HUB_ID.fullmatch(text):
        folder = text.rsplit("/", 1)[1]
        raise InteropError(text, f"{DOWNLOAD_HINT} download {text} --local-dir {folder} "
                                 f"(nothing is downloaded here), then give the folder {folder}")
    raise InteropError(text, f"does not exist ({DOWNLOAD_HINT} if it is a model on a hub)")
