"""Kill during save: a process that trains and saves in a loop is SIGKILLed at random moments.

After every kill the checkpoint file loads (its checksum proves it is whole) and holds a step
that was being or had been saved, never an older one. Whatever else a kill leaves in the
folder (temp files of the interrupted write) is never named like a checkpoint, and loading
it either fails with a CheckpointError naming it or gives a complete, older-or-equal state.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.checkpoint import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).resolve().parent / "faults_save_loop.py"
KILLS = 24
NAME = "run.safetensors"


class Lines:
    """Lines of a pipe, read by a thread, so the test can wait with a timeout."""

    def __init__(self, stream):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float = 120.0) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the save loop is silent; its last lines:\n"
                                 + "\n".join(self.seen[-20:])) from None
        assert line is not None, "the save loop ended early:\n" + "\n".join(self.seen[-20:])
        self.seen.append(line)
        assert not line.startswith("error"), line
        return line


def strays(folder: Path, path: Path) -> set[Path]:
    """Every file under `folder` (hidden ones and sub-folders included) except the checkpoint."""
    return {p for p in folder.rglob("*") if p.is_file() and p != path}


def check_stray(stray: Path, started: int) -> None:
    try:
        complete = load_checkpoint(stray)   # written in full, killed before the rename
    except CheckpointError as exc:
        assert str(stray) in str(exc)
    else:
        assert complete.step <= started, stray


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_bad_checkpoint(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / NAME
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, str(SERVER), str(path)], cwd=ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines = Lines(server.stdout)
    rng = random.Random(20261125)
    save_seconds: list[float] = [0.1]   # whole save_checkpoint calls
    write_seconds: list[float] = []     # from "writing" to the end of the save
    on_disk: int | None = None          # the checkpoint's step after the previous kill
    hit_the_write = 0                   # kills while a checkpoint was being written
    left_temp_files = 0                 # kills that left a temp file behind
    try:
        assert lines.next() == "ready"
        for kill in range(KILLS):
            before = strays(folder, path)
            server.stdin.write("fork 0\n")
            pid = int(lines.next().split()[1])
            assert lines.next() == ("fresh" if on_disk is None else f"resumed {on_disk}")
            # let 0-2 saves complete, then kill at a random moment of the next one: every
            # other kill anywhere in the save, the others while its bytes are being written
            saves_before = rng.randrange(3)
            aim = "saving" if kill % 2 else "writing"
            started, confirmed, aimed_at, writing_since = None, on_disk, 0, None
            while aimed_at <= saves_before:
                word, step, *rest = lines.next().split()
                if word == "saving":
                    started = int(step)
                elif word == "writing":
                    writing_since = float(rest[0])
                else:
                    confirmed = int(step)
                    save_seconds.append(float(rest[0]))
                    write_seconds.append(float(rest[1]) - writing_since)
                aimed_at += word == aim
            typical = statistics.median(save_seconds if aim == "saving" else write_seconds or [0.05])
            threading.Event().wait(rng.uniform(0.0, 1.2 * typical))
            os.kill(pid, signal.SIGKILL)
            last = word
            while True:                  # everything the child wrote before it died
                words = lines.next().split()
                if words[0] == "reaped":
                    status = int(words[2])
                    break
                last = words[0]
                if words[0] == "saving":
                    started = int(words[1])
                elif words[0] == "saved":
                    confirmed = int(words[1])
            hit_the_write += last == "writing"   # died between the first byte and "saved"
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

            where = f"kill {kill + 1}: last save started at step {started}, confirmed {confirmed}"
            if path.exists():
                step = load_checkpoint(path).step   # CheckpointError if it were damaged
                allowed = (started,) if confirmed is None else (confirmed, started)
                assert step in allowed, f"{where}; the file holds step {step}"
                assert on_disk is None or step >= on_disk, f"{where}; went back to step {step}"
                on_disk = step
            else:
                assert confirmed is None, f"{where}; the checkpoint vanished"
            # nothing else looks like a checkpoint, and nothing else is mistaken for one
            assert sorted(folder.glob("*.safetensors")) == ([path] if path.exists() else [])
            assert sorted(folder.glob("*.ckpt")) == []
            left = strays(folder, path)
            left_temp_files += bool(left - before)
            for stray in left - before:
                check_stray(stray, started)
        # the kills hit the write itself, not only the training steps around it
        assert hit_the_write >= KILLS // 6, f"only {hit_the_write} of {KILLS} kills landed in a write"
        assert left_temp_files >= 1, "no kill left a temp file: the stray-file checks never ran"
        # a clean run afterwards resumes, saves twice, exits 0 and leaves no stale temp file
        server.stdin.write("fork 2\n")
        lines.next()
        assert lines.next() == f"resumed {on_disk}"
        while not (line := lines.next()).startswith("reaped"):
            last = line
        assert line.split()[2] == "0"
        assert last.startswith(f"saved {on_disk + 2} ")
        assert load_checkpoint(path).step == on_disk + 2
        assert strays(folder, path) == set(), "temp files of killed saves were left behind"
        assert sorted(os.listdir(folder)) == [NAME]
        server.stdin.write("quit\n")
        server.stdin.flush()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
