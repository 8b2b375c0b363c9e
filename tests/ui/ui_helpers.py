"""Helpers shared by the UI tests (imported as a plain module: tests/ui is on sys.path)."""

from __future__ import annotations


def tiny_config(steps: int = 150, timesteps: int = 20):
    """The toy-2d preset shrunk: T=20, a 32-wide MLP, one metric row per step."""
    from core.presets import load_preset

    cfg = load_preset("toy-2d")
    cfg.model.hidden = 32
    cfg.model.mlp_blocks = 1
    cfg.diffusion.timesteps = timesteps
    cfg.train.num_samples = 2000
    cfg.train.batch_size = 64
    cfg.train.steps = steps
    cfg.train.log_every = 1
    cfg.train.probe_every = 50
    cfg.train.probe_timesteps = 10
    cfg.train.warmup_steps = 10
    return cfg.validate()


def train(window, qtbot, cfg, timeout: int = 60000) -> str:
    """Show cfg, press Start and wait for the GUI-thread training_finished signal."""
    window.experiment.set_config(cfg, preset=None)
    qtbot.waitUntil(lambda: window.controls.startButton.isEnabled(), timeout=5000)
    with qtbot.waitSignal(window.training_finished, timeout=timeout) as blocker:
        window.controls.startButton.click()
    return blocker.args[0]
