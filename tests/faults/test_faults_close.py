"""Closing the window mid-work: during training, during sampling, during a checkpoint save.

The real exit path, in a subprocess: the window has stopped and joined every worker and left
the event loop within 2 s of close(), the process then ends with exit code 0 (CPython's
teardown of torch adds 1-3 s on a busy 2-core machine, so the whole exit is allowed 10 s), Qt
never destroys a running thread, and nothing is printed as a traceback.

Autosave: the app does not save on close (a run has no folder of its own; saving is the
user's explicit File > Save), so closing during training leaves no file behind. A save that
is already being written when the window closes is finished, not cut off: the file loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "faults_close_app.py"
CLOSE_WITHIN_S = 2.0      # close() -> every thread joined, event loop returned
EXIT_WITHIN_S = 10.0      # close() -> process gone


def run_and_close(mode: str, tmp_path: Path):
    settings = tmp_path / "settings.ini"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               DIFFUSION_EXPLORER_SETTINGS=str(settings))
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", str(SCRIPT), mode, str(settings),
         str(tmp_path / "run.safetensors")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: dict[str, list[str]] = {"out": [], "err": []}

    def read(stream, name) -> None:
        for line in stream:
            lines[name].append(line)

    readers = [threading.Thread(target=read, args=(process.stdout, "out"), daemon=True),
               threading.Thread(target=read, args=(process.stderr, "err"), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=150)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the app did not exit: {''.join(lines['out'])} {''.join(lines['err'])[-3000:]}")
    exited_at = time.monotonic()
    for reader in readers:
        reader.join(10)
    out = "".join(lines["out"])
    clock = {line.split()[0]: float(line.split()[-1]) for line in lines["out"]
             if line.startswith(("closing", "closed"))}
    timing = (clock["closed"] - clock["closing"], exited_at - clock["closing"]) \
        if len(clock) == 2 else None
    return process.returncode, out, "".join(lines["err"]), timing


@pytest.mark.slow
@pytest.mark.parametrize("mode, what", [("training", "closing during training"),
                                        ("sampling", "closing during sampling"),
                                        ("saving", "closing during a checkpoint save at step")])
def test_closing_mid_work_exits_cleanly_and_quickly(tmp_path, mode, what):
    code, out, err, timing = run_and_close(mode, tmp_path)
    assert what in out, out + err
    assert code == 0, err[-3000:]
    assert "QThread: Destroyed" not in err
    assert "Traceback" not in err and "Fatal Python error" not in err, err[-3000:]
    assert timing is not None, out
    closed, exited = timing
    assert closed < CLOSE_WITHIN_S, f"the window took {closed:.2f} s to close"
    assert exited < EXIT_WITHIN_S, f"the process took {exited:.2f} s to exit"
    checkpoint = tmp_path / "run.safetensors"
    if mode == "saving":
        # the save in flight was completed before the process ended, and it is whole
        step = int(out.split("save at step ")[1].split()[0])
        assert load_checkpoint(checkpoint).step >= step
        assert sorted(os.listdir(tmp_path)) == ["run.safetensors", "settings.ini"]
    else:
        assert not checkpoint.exists()          # no autosave (see the module docstring)
