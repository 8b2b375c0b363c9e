"""Helpers shared by the UI tests (imported as a plain module: tests/ui is on sys.path)."""

from __future__ import annotations

from tiny_configs import tiny_toy_config


def tiny_config(steps: int = 150, timesteps: int = 20):
    """The toy-2d preset shrunk: T=20, a 32-wide MLP, one metric row per step, probes every 50."""
    return tiny_toy_config(steps, timesteps, probe_every=50)


def train(window, qtbot, cfg, timeout: int = 60000) -> str:
    """Show cfg, press Start and wait for the GUI-thread training_finished signal."""
    window.experiment.set_config(cfg, preset=None)
    qtbot.waitUntil(lambda: window.controls.startButton.isEnabled(), timeout=5000)
    with qtbot.waitSignal(window.training_finished, timeout=timeout) as blocker:
        window.controls.startButton.click()
    return blocker.args[0]
