"""Fork server for the kill-during-save test (run as a script, never collected by pytest).

Importing torch costs seconds on a busy machine, so this process imports once and forks a
fresh child per command; the test SIGKILLs the child at a random moment. The server itself
runs no torch op before forking (torch.set_num_threads(1), no thread pool), so forking is safe.

Protocol (one line each, on stdin / stdout):
  fork N   a child resumes from CHECKPOINT (or starts fresh), then N times: one training
           step, "saving STEP", save_checkpoint, "saved STEP SECONDS CLOCK"; N = 0 loops
           forever. Inside save_checkpoint, right before the bytes are written, the child
           prints "writing STEP CLOCK" (CLOCK: time.monotonic()), so the test can aim kills
           at the write itself.
           The server prints "child PID", the child "resumed STEP" or "fresh", and the server
           "reaped PID STATUS" once the child is gone (status is os.waitpid's).
  quit     exit.
"""

from __future__ import annotations

import os
import sys
import time


def child(checkpoint: str, saves: int) -> None:
    import core.checkpoint
    from core.checkpoint import save_checkpoint, trainer_from_checkpoint
    from core.config import ExperimentConfig
    from core.data import get_dataset
    from core.training import Trainer

    config = ExperimentConfig.from_dict({
        # about 10 MB per checkpoint, so a save lasts long enough to be hit by a kill
        "model": {"kind": "mlp", "hidden": 256, "mlp_blocks": 2},
        "diffusion": {"schedule": "linear", "timesteps": 20},
        "train": {"dataset": "8gaussians", "num_samples": 400, "batch_size": 32,
                  "device": "cpu", "log_every": 1, "probe_every": 0, "probe_timesteps": 4,
                  "warmup_steps": 2, "steps": 1_000_000},
    }).validate()
    dataset = get_dataset("8gaussians", num_samples=400, seed=0)
    if os.path.exists(checkpoint):
        trainer = trainer_from_checkpoint(checkpoint, dataset=dataset)
        say(f"resumed {trainer.step}")
    else:
        trainer = Trainer(config, dataset=dataset)
        say("fresh")
    real_save_file = core.checkpoint.save_file

    def announced_save_file(tensors, filename, metadata=None):
        say(f"writing {trainer.step} {time.monotonic():.6f}")
        real_save_file(tensors, filename, metadata=metadata)

    core.checkpoint.save_file = announced_save_file
    done = 0
    while saves == 0 or done < saves:
        trainer.run(1)
        say(f"saving {trainer.step}")
        start = time.perf_counter()
        save_checkpoint(checkpoint, trainer)
        say(f"saved {trainer.step} {time.perf_counter() - start:.4f} {time.monotonic():.6f}")
        done += 1


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    checkpoint = sys.argv[1]
    import torch

    torch.set_num_threads(1)
    # import everything once, inherited by every child: AdamW's first construction imports
    # torch._dynamo (seconds); it runs no parallel op, so no thread pool exists at fork time
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    import core.checkpoint  # noqa: F401
    import core.data  # noqa: F401

    say("ready")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "fork":
            saves = int(words[1])
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    child(checkpoint, saves)
                except BaseException as exc:  # noqa: BLE001 - reported to the test
                    say(f"error {type(exc).__name__}: {exc}")
                    code = 1
                finally:
                    os._exit(code)
            say(f"child {pid}")
            _, status = os.waitpid(pid, 0)
            say(f"reaped {pid} {status}")


if __name__ == "__main__":
    main()
