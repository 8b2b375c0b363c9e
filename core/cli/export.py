"""`python -m core export --checkpoint CKPT --format diffusers --out DIR`: a model for the
diffusers ecosystem (core.interop.export).

DIR becomes a DDPMPipeline folder (unet/, scheduler/, model_index.json) that diffusers'
DDPMPipeline and DDIMPipeline load with from_pretrained. The source is anything the
explorer opens (its checkpoints' EMA weights, or a model from elsewhere, converted). DIR must
not exist or be empty unless --force; files are written atomically, model_index.json last.
"""

from __future__ import annotations

import sys

from core.cli.common import RunFailed, add_threads

FORMATS = ("diffusers",)


def add_parser(commands) -> None:
    exp = commands.add_parser(
        "export", help="write a model as a diffusers pipeline folder",
        description="Write the EMA weights of a checkpoint (or a model opened from elsewhere) "
                    "as a diffusers DDPMPipeline folder that DDPMPipeline and DDIMPipeline load. "
                    "Refused with the reason: models of vector data (an MLP) and UNet options "
                    "diffusers' UNet2DModel lacks.")
    add_threads(exp)
    exp.add_argument("--checkpoint", required=True,
                     help="the model: a checkpoint, a diffusers folder or an improved-diffusion .pt")
    exp.add_argument("--model-flags", help="for an improved-/guided-diffusion .pt: its flags")
    exp.add_argument("--format", choices=FORMATS, default="diffusers",
                     help="the folder layout to write (default diffusers)")
    exp.add_argument("--out", required=True, help="the folder to write (created; must be empty)")
    exp.add_argument("--raw", action="store_true",
                     help="the checkpoint's raw weights instead of its EMA weights")
    exp.add_argument("--force", action="store_true", help="write into a non-empty folder")


def run(args) -> int:
    from core.interop import open_model
    from core.interop.export import ExportWriteError, export_diffusers

    opened = open_model(args.checkpoint, flags=args.model_flags, ema=not args.raw)
    try:
        files = export_diffusers(opened, args.out, force=args.force)
    except ExportWriteError as exc:
        raise RunFailed(str(exc)) from None
    print(f"wrote {args.out} ({len(files)} files: a diffusers DDPMPipeline)", file=sys.stderr)
    return 0
