"""Closing the window while training and sampling run: the real exit path, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv)
from app.__main__ import prewarm_torch
prewarm_torch()
from app.main_window import MainWindow
from app.settings import make_settings
from core.presets import load_preset

window = MainWindow(make_settings(sys.argv[1]), restore=False)
window.show()
cfg = load_preset("toy-2d")
cfg.model.hidden, cfg.model.mlp_blocks = 32, 1
cfg.diffusion.timesteps = 1000
cfg.train.num_samples, cfg.train.batch_size, cfg.train.steps = 2000, 64, 10_000_000
window.experiment.set_config(cfg, preset=None)
state = {"closed_at": None, "sampled": False}

def poll():
    if window.session.dataset is None or window.training.state == "idle":
        if window.session.dataset is not None and window.training.state == "idle":
            window.controls.startButton.click()
        return
    trainer = window.session.trainer
    if window.training.state == "running" and trainer is not None and trainer.step > 20:
        if not state["sampled"]:
            state["sampled"] = True
            window.trajectory_panel.sampleStepsSpin.setValue(1000)
            window.trajectory_panel.countSpin.setValue(2000)
            window.trajectory_panel.sampleButton.click()
        elif window.sampling.is_active() and state["closed_at"] is None:
            state["closed_at"] = time.monotonic()
            print("closing with training", window.training.state, "and sampling active",
                  flush=True)
            window.close()

timer = QTimer()
timer.timeout.connect(poll)
timer.start(50)
QTimer.singleShot(60000, app.quit)  # a hang guard, never reached when closing works
app.exec()
print(f"closed in {time.monotonic() - state['closed_at']:.2f} s", flush=True)
"""


def test_closing_during_training_and_sampling_exits_cleanly(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               DIFFUSION_EXPLORER_SETTINGS=str(tmp_path / "settings.ini"))
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SCRIPT,
                             str(tmp_path / "settings.ini")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "closing with training running and sampling active" in result.stdout, (
        result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    assert "QThread: Destroyed" not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "closed in" in result.stdout
    print(result.stdout)
