"""`python -m core sample`: draw samples from a checkpoint with any registered sampler."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import core.samplers as sampler_registry
from core.cli.common import UsageError, add_threads, check_positive, training_data
from core.cli.pictures import image_grid, scatter_plot
from core.samplers.base import VARIANCE


def add_parser(commands) -> None:
    smp = commands.add_parser("sample", help="draw samples from a checkpoint",
                              description="Sample with the EMA weights of a checkpoint; write a "
                              "PNG (image grid or 2-D scatter) and/or the samples as .npy.")
    add_threads(smp)
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



def run(args) -> int:
    from core.checkpoint import load_checkpoint
    from core.config import ConfigError, SamplingConfig
    from core.device import resolve_device
    from core.generate import sample

    check_positive("--n", args.n)
    check_positive("--steps", args.steps)
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

        analytic = gamma_sample(training_data(args.checkpoint, checkpoint).train, seed=args.seed)
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


