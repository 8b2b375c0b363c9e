"""Closing the window mid-work: during training, during sampling, during a checkpoint save.

The real exit path, in a subprocess: the window stops every worker, waits about a second for
them (without limit for a checkpoint save), leaves the event loop, and the process ends with
exit code 0 through the app's fast exit (os._exit, also with a worker still in a long step);
Qt never destroys a running thread, and nothing is printed as a traceback. How long it takes is measured in bench/close_exit_time.py, not asserted here
(a 150 s guard only catches a hang).

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
def test_closing_mid_work_exits_cleanly(tmp_path, mode, what):
    code, out, err, timing = run_and_close(mode, tmp_path)
    assert what in out, out + err
    assert code == 0, err[-3000:]
    assert "QThread: Destroyed" not in err
    assert "Traceback" not in err and "Fatal Python error" not in err, err[-3000:]
    assert timing is not None, out    # "closing" and "closed" were both printed
    checkpoint = tmp_path / "run.safetensors"
    if mode == "saving":
        # the save in flight was completed before the process ended, and it is whole
        step = int(out.split("save at step ")[1].split()[0])
        assert load_checkpoint(checkpoint).step >= step
        assert sorted(os.listdir(tmp_path)) == ["run.safetensors", "settings.ini"]
    else:
        assert not checkpoint.exists()          # no autosave (see the module docstring)


@pytest.mark.slow
def test_closing_during_a_long_step_does_not_wait_for_it(tmp_path):
    """A step that takes a minute (a huge model on a CPU) does not hold the window: closing
    waits about a second, then the process leaves (os._exit) with the step unfinished; the
    settings are written, and Qt never destroys the running thread."""
    code, out, err, timing = run_and_close("long-step", tmp_path)
    assert "closing during a long training step" in out, out + err
    assert code == 0, err[-3000:]
    assert "QThread: Destroyed" not in err
    assert "Traceback" not in err and "Fatal Python error" not in err, err[-3000:]
    assert timing is not None, out
    assert not (tmp_path / "run.safetensors.step-ended").exists()   # it did not wait
    assert (tmp_path / "settings.ini").stat().st_size > 0


@pytest.mark.slow
def test_a_save_queued_behind_a_long_step_is_finished_before_the_exit(tmp_path):
    code, out, err, _timing = run_and_close("long-step-saving", tmp_path)
    assert "closing during a long step with a save queued" in out, out + err
    assert code == 0, err[-3000:]
    assert "QThread: Destroyed" not in err and "Traceback" not in err, err[-3000:]
    step = int(out.split("queued at step ")[1].split()[0])
    assert (tmp_path / "run.safetensors.step-ended").exists()     # the step was waited for
    assert load_checkpoint(tmp_path / "run.safetensors").step == step + 1
