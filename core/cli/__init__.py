"""Headless command line: `python -m core train|sample|evaluate` (see `--help` of each).

Errors print one line `error: ...` on stderr, never a traceback: exit code 2 for bad
arguments, settings, data or checkpoints, 1 for failures while running (divergence, I/O),
130 after Ctrl-C (training saves its checkpoint first). One module per command.
"""

from __future__ import annotations

import sys

from core.cli import compare, evaluate, export, inspect_model, likelihood, sample, train
from core.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_USAGE,
    Parser,
    RunFailed,
    UsageError,
)
from core.cli.pictures import image_grid, scatter_plot
from core.cli.train import TEST_DUMP_ENV

__all__ = ["EXIT_INTERRUPTED", "EXIT_RUNTIME", "EXIT_USAGE", "OOM_ADVICE", "TEST_DUMP_ENV",
           "RunFailed", "UsageError", "build_parser", "image_grid", "main", "scatter_plot"]

OOM_ADVICE = ("out of memory: lower train.batch_size or the model size (model.channels, "
              "model.hidden) in the config, sample fewer at once (--n, --batch-size), or choose "
              "another --device")
COMMANDS = {"train": train, "sample": sample, "evaluate": evaluate, "compare-samplers": compare,
            "likelihood": likelihood, "inspect": inspect_model, "export": export}


def build_parser() -> Parser:
    parser = Parser(prog="python -m core", description="Train, sample and evaluate diffusion "
                    "models without the app.")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}",
                                     parser_class=Parser)
    commands.required = True
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


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
        from core.device import configure_threads

        configure_threads(args.threads)      # --threads, else the rule the app uses too
        return COMMANDS[args.command].run(args)
    except (CheckpointWriteError, RunFailed) as exc:  # disk full, NaN samples: the run failed
        return _fail(exc, EXIT_RUNTIME)
    except (UsageError, ConfigError, DataError, CheckpointError, ValueError) as exc:
        return _fail(exc, EXIT_USAGE)
    except (TrainingDiverged, OSError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            return _fail(exc, EXIT_RUNTIME, getattr(exc, "advice", OOM_ADVICE))
        return _fail(exc, EXIT_RUNTIME)
    except MemoryError as exc:
        return _fail(exc, EXIT_RUNTIME, getattr(exc, "advice", OOM_ADVICE))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(exc: BaseException, code: int, advice: str = "") -> int:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr)
    if advice:
        print(f"hint: {advice}", file=sys.stderr)
    return code


