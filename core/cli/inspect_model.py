"""`python -m core inspect PATH`: what a model file or folder holds, as the explorer reads it.

Recognises the explorer's checkpoints, diffusers pipeline and UNet2DModel folders, and
improved-/guided-diffusion state dicts (flags from --model-flags, a flags.json beside the
file, or else guessed from the tensor shapes and marked as guessed). Prints the format, the
network and its parameter count, the diffusion settings, what was mapped to what and what
was noted; --json prints the same as one JSON object. Nothing is downloaded.
"""

from __future__ import annotations

import json

from core.cli.common import add_threads


def add_parser(commands) -> None:
    ins = commands.add_parser(
        "inspect", help="what a model file or folder holds (any supported format)",
        description="Open a model the way sample and evaluate would (an explorer checkpoint, "
                    "a diffusers pipeline or UNet2DModel folder, an improved-/guided-diffusion "
                    ".pt) and print what was recognised: format, architecture, parameter "
                    "count, diffusion settings, what was mapped and what was refused or noted.")
    add_threads(ins)
    ins.add_argument("path", help="a checkpoint, a diffusers folder or a .pt state dict")
    ins.add_argument("--model-flags", help="for a .pt: its flags (pasted text or a JSON file); "
                     "default: a flags.json beside it, else a guess from the tensor shapes")
    ins.add_argument("--json", action="store_true", help="print one JSON object instead")


def run(args) -> int:
    from core.interop import open_model
    from core.interop.describe import describe, describe_lines

    opened = open_model(args.path, flags=args.model_flags, guess_flags=True)
    summary = describe(opened)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print("\n".join(describe_lines(summary)))
    return 0
