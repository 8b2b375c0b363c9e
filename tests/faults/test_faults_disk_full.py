"""Disk full: a save that fails while writing leaves the previous checkpoint intact, leaves no
temp file, says so, and the next save works. Simulated with OSError(ENOSPC) at each stage of
the write, and for real with RLIMIT_FSIZE, which makes the OS refuse the write (EFBIG) inside
safetensors' own writer."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys

import pytest
from faults_helpers import (
    assert_history_consistent,
    assert_same_state,
    core_trainer,
    state_of,
    tiny_config,
)

import core.atomic_write as atomic_write_module
import core.checkpoint as checkpoint_module
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_during(stage: str, monkeypatch) -> None:
    """Make the write fail with ENOSPC while writing, while syncing, or while renaming."""
    if stage == "write":
        def write(tensors, filename, metadata=None):
            with open(filename, "wb") as handle:
                handle.write(b"\x00" * 1000)   # what fitted before the disk filled up
            raise ENOSPC
        monkeypatch.setattr(checkpoint_module, "save_file", write)
    elif stage == "fsync":
        monkeypatch.setattr(atomic_write_module.os, "fsync", lambda fd: (_ for _ in ()).throw(ENOSPC))
    elif stage == "rename":
        monkeypatch.setattr(atomic_write_module.os, "replace", lambda a, b: (_ for _ in ()).throw(ENOSPC))


@pytest.fixture
def saved(tmp_path):
    trainer = core_trainer(steps=3)
    path = tmp_path / "ckpt" / "run.safetensors"
    path.parent.mkdir()
    save_checkpoint(path, trainer)
    trainer.run(2)
    return trainer, path


@pytest.mark.parametrize("stage", ["write", "fsync", "rename"])
def test_enospc_keeps_the_previous_checkpoint_and_says_so(saved, monkeypatch, stage):
    trainer, path = saved
    before, state = path.read_bytes(), state_of(trainer)
    full_disk_during(stage, monkeypatch)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, trainer)
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message
    assert "previous checkpoint there is unchanged" in message
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]      # no temp file left
    assert_same_state(state_of(trainer), state)                # saving changed nothing
    monkeypatch.undo()
    assert load_checkpoint(path).step == 3
    save_checkpoint(path, trainer)                              # space again: it works
    assert load_checkpoint(path).step == 5
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_enospc_on_a_first_save_leaves_nothing(tmp_path, monkeypatch):
    trainer = core_trainer(steps=1)
    path = tmp_path / "first.safetensors"
    full_disk_during("write", monkeypatch)
    with pytest.raises(CheckpointError, match="No space left on device.*no checkpoint was written"):
        save_checkpoint(path, trainer)
    assert os.listdir(tmp_path) == []


def _limit_file_size(size: int):
    """preexec_fn for a child process: RLIMIT_FSIZE = size, SIGXFSZ ignored (survives exec),
    so a write past `size` fails with EFBIG instead of killing the child. Only the child is
    limited: pytest's own output, possibly a file, must never be."""
    def apply() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


REFUSED_SAVE = """
import os, sys
sys.path[:0] = [{helpers!r}, os.path.dirname({helpers!r})]
from faults_helpers import core_trainer
from core.checkpoint import CheckpointError, save_checkpoint
trainer = core_trainer(steps=5)
try:
    save_checkpoint({path!r}, trainer)
except CheckpointError as exc:
    print(exc)
    sys.exit(3)
sys.exit(0)
"""


def test_a_real_refused_write_is_a_checkpoint_error_not_a_library_error(saved, tmp_path):
    """The OS refuses the bytes inside safetensors' Rust writer (as with a full disk)."""
    _, path = saved
    before = path.read_bytes()
    script = REFUSED_SAVE.format(helpers=os.path.dirname(__file__), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, preexec_fn=_limit_file_size(len(before) // 2))
    assert proc.returncode == 3, proc.stderr
    message = proc.stdout.strip()
    assert "File too large" in message and str(path) in message
    assert "previous checkpoint there is unchanged" in message
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_cli_train_on_a_full_disk_prints_one_line(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(steps=3, num_samples=200).to_dict()))
    out = tmp_path / "out.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "core", "train", "--config", str(config), "--out", str(out),
         "--threads", "1"],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(4096))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1  # a run-time failure, not a usage error (2)
    assert "Traceback" not in proc.stderr
    assert err[-1].startswith("error: checkpoint ") and "File too large" in err[-1], err
    assert not out.exists() and os.listdir(tmp_path) == ["config.json"]


def test_window_save_on_a_full_disk_shows_the_error_and_keeps_training(window, qtbot, tmp_path,
                                                                       monkeypatch):
    path = tmp_path / "ui.safetensors"
    window.experiment.set_config(tiny_config(steps=1_000_000), preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and window.session.trainer.step > 3, timeout=30000)
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(str(path))                   # between steps, in the worker
    before = path.read_bytes()
    full_disk_during("write", monkeypatch)
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.save_checkpoint(str(path))
    assert str(path) in shown.args[0] and "No space left on device" in shown.args[0]
    assert "unchanged" in shown.args[0]
    assert window.training.state == "running"              # the run goes on
    step = window.session.trainer.step
    qtbot.waitUntil(lambda: window.session.trainer.step > step + 3, timeout=30000)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.stopButton.click()
    # stopped: the save runs as a background job; it fails the same way
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.save_checkpoint(str(path))
    assert "No space left on device" in shown.args[0] and "unchanged" in shown.args[0]
    assert path.read_bytes() == before
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".ini")] == ["ui.safetensors"]
    monkeypatch.undo()
    with qtbot.waitSignal(window.checkpoint_saved, timeout=20000):
        window.save_checkpoint(str(path))
    trainer = window.session.trainer
    assert load_checkpoint(path).step == trainer.step
    assert_history_consistent(trainer)
