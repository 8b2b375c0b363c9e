"""`python -m core sample`: draw samples from a checkpoint with any registered sampler.

Outputs are checked before anything is sampled (folder exists, not a folder, not an existing
file unless --force, a picture extension Pillow writes, a .npy suffix) and written atomically
(core.atomic_write), to exactly the path given. Samples holding NaN or infinity are not
written: the run fails (exit 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import core.samplers as sampler_registry
from core.cli.common import (
    RunFailed,
    UsageError,
    add_threads,
    bounded_float,
    bounded_int,
    check_output,
    limited_float,
    limited_int,
    write_output,
)
from core.cli.pictures import image_grid, picture_formats, scatter_plot
from core.cli.source import add_source, load_noise, load_source
from core.data.formats import MAX_CLASSES
from core.samplers.base import VARIANCE
from core.spacing import DEFAULT_SPACING, SPACING_NAMES, SPACINGS


def add_parser(commands) -> None:
    smp = commands.add_parser("sample", help="draw samples from a checkpoint",
                              description="Sample with the EMA weights of a checkpoint (or a "
                              "mixture preset's exact eps); write a picture (image grid or 2-D "
                              "scatter plot) and/or the samples as .npy. Files are written "
                              "whole or not at all, to exactly the path given; an existing "
                              "file is kept unless --force.")
    add_threads(smp)
    add_source(smp)
    smp.add_argument("--n", type=limited_int("sampling.n"), default=64,
                     help="number of samples (default 64)")
    samplers = sampler_registry.samplers()
    smp.add_argument("--sampler", choices=[spec.name for spec in samplers],
                     default=sampler_registry.DEFAULT_SAMPLER,
                     help="; ".join(f"{spec.name}: {spec.label}" for spec in samplers)
                          + f" (default {sampler_registry.DEFAULT_SAMPLER})")
    smp.add_argument("--steps", type=limited_int("sampling.steps"),
                     help="sampling steps, at most the model's T (default: the sampler's, "
                          "e.g. all T for ddpm, 50 for ddim)")
    smp.add_argument("--guidance", type=limited_float("sampling.guidance"), default=0.0,
                     help="classifier-free guidance scale w")
    smp.add_argument("--label", type=bounded_int(0, MAX_CLASSES - 1),
                     help="class to sample (class-conditional models)")
    smp.add_argument("--seed", type=limited_int("sampling.seed"), default=0)
    smp.add_argument("--spacing", choices=SPACING_NAMES, default=DEFAULT_SPACING,
                     help="which timesteps the steps visit: " + "; ".join(
                         f"{spec.name}: {spec.label}" for spec in SPACINGS.values())
                     + f" (default {DEFAULT_SPACING})")
    smp.add_argument("--noise", help="a .npy file with the initial noise x_T, shape (N, data "
                     "shape...), so runs of different samplers start from the same x_T")
    for option in sampler_registry.all_options().values():
        users = ", ".join(spec.name for spec in samplers if option in spec.options)
        flags = list(dict.fromkeys([_flag(option.name), f"--{option.name}"]))
        if option.kind == "choice":
            smp.add_argument(*flags, dest=option.name, choices=[v for v, _ in option.choices],
                             default=None, help=f"{option.help} (for {users}; default "
                             f"{option.default})")
        else:
            smp.add_argument(*flags, dest=option.name,
                             type=bounded_float(option.low, option.high), default=None,
                             help=f"{option.help} (for {users}; {option.low:g} to "
                                  f"{option.high:g}, default {option.default:g})")
    smp.add_argument("--device", default="auto")
    smp.add_argument("--out", help="picture file: an image grid, or a scatter plot for 2-D data ("
                     + ", ".join(picture_formats()) + ")")
    smp.add_argument("--npy", help="file of the final samples in data space (float32, N x data "
                     "shape), written to exactly this path, which must end in .npy")
    smp.add_argument("--force", action="store_true", help="overwrite existing --out/--npy files")


def _flag(name: str) -> str:
    """A sampler option's flag: --corrector-steps for corrector_steps (the underscore
    spelling is accepted too)."""
    return "--" + name.replace("_", "-")


def _check_outputs(args) -> None:
    """Every output flag refused before any work, naming the flag."""
    if not args.out and not args.npy:
        raise UsageError("give --out FILE.png and/or --npy FILE.npy")
    if args.out:
        suffix = Path(args.out).suffix
        if suffix.lower() not in picture_formats():
            raise UsageError(f"--out {args.out}: unknown picture extension "
                             f"{suffix or '(none)'!r}; use one of "
                             + ", ".join(picture_formats()))
        check_output("--out", args.out, args.force)
    if args.npy:
        if Path(args.npy).suffix != ".npy":
            raise UsageError(f"--npy {args.npy}: the file name must end in .npy")
        check_output("--npy", args.npy, args.force)


def _sampler_options(args, spec) -> dict:
    options = {}
    for name in sampler_registry.all_options():
        value = getattr(args, name)
        if value is None:
            continue
        if name not in spec.option_names() and value != sampler_registry.all_options()[name].default:
            raise UsageError(f"{_flag(name)} is not an option of --sampler {spec.name}; "
                             f"{spec.name} takes " + (", ".join(_flag(o) for o in spec.option_names())
                                                      or "no options"))
        options[name] = value
    return options


def _check_model_fits(args, source, spec) -> int:
    """--steps, --label, --guidance and --out against the model; the steps to run."""
    timesteps = source.diffusion.num_timesteps
    steps = args.steps if args.steps is not None else spec.default_steps(timesteps)
    if steps > timesteps:
        raise UsageError(f"--steps {steps}: the model has only {timesteps} timesteps")
    if source.num_classes is None and (args.label is not None or args.guidance != 0.0):
        raise UsageError(f"--{'label' if args.label is not None else 'guidance'}: this model is "
                         "unconditional: label and guidance need a class-conditional model")
    if args.guidance != 0.0 and args.label is None:
        raise UsageError("--guidance needs --label (the class to steer towards)")
    if args.label is not None and args.label >= source.num_classes:
        raise UsageError(f"--label {args.label}: the model's classes are 0 to "
                         f"{source.num_classes - 1}")
    if args.out and len(source.data_shape) == 1 and source.data_shape != (2,):
        raise UsageError(f"--out: no picture for {source.data_shape[0]}-D vectors; use --npy")
    return steps


def run(args) -> int:
    from core.config import ConfigError, SamplingConfig
    from core.device import resolve_device
    from core.generate import sample

    spec = sampler_registry.get_sampler(args.sampler)
    options = _sampler_options(args, spec)
    request = SamplingConfig(sampler=spec.name, steps=args.steps, n=args.n, seed=args.seed,
                             guidance=args.guidance, label=args.label, options=options,
                             spacing=args.spacing)
    try:
        request.validate()
    except ConfigError as exc:
        raise UsageError(f"--{exc.field.split('.', 1)[1]}: {exc.allowed}") from None
    chosen = request.sampler_options()
    _check_outputs(args)
    device = resolve_device(args.device)
    source = load_source(args, device)
    steps = _check_model_fits(args, source, spec)
    noise = (load_noise("--noise", args.noise, (args.n, *source.data_shape))
             if args.noise else None)
    analytic = None
    if chosen.get(VARIANCE.name) == "analytic":
        from core.analytic_dpm import gamma_sample

        analytic = gamma_sample(source.dataset().train, seed=args.seed)
    trajectory = sample(source.model, source.diffusion, args.n, source.data_shape,
                        sampler=spec.name, steps=steps, options=chosen, spacing=args.spacing,
                        noise=noise, guidance=args.guidance, label=args.label,
                        num_classes=source.num_classes, seed=args.seed,
                        record_every=10**9, data_box=source.data_box,
                        analytic_data=analytic, device=device)
    final = trajectory.final
    bad = int((~np.isfinite(final.reshape(len(final), -1))).any(axis=1).sum())
    if bad:
        raise RunFailed(f"{bad} of {len(final)} samples hold NaN or infinity (the model's output "
                        f"is not finite with these settings); nothing was written")
    if args.npy:
        write_output("--npy", check_output("--npy", args.npy, True),
                     lambda temp: _save_npy(temp, final))
        print(f"wrote {args.npy} {final.shape}", file=sys.stderr)
    if args.out:
        if trajectory.kind == "image":
            picture = image_grid(trajectory.final_uint8)
        else:
            picture = scatter_plot(final, title=f"{spec.name}, {steps} steps, n = {args.n}")
        out = check_output("--out", args.out, True)
        fmt = picture_formats()[out.suffix.lower()]
        write_output("--out", out, lambda temp: picture.save(temp, format=fmt))
        print(f"wrote {args.out} ({picture.width}x{picture.height})", file=sys.stderr)
    return 0


def _save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:       # a handle: np.save adds no suffix
        np.save(handle, array)
