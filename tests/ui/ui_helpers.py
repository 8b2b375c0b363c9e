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


class StepGate:
    """Holds each gated step until the test lets it go: `entered` counts the steps that
    began, `release(n)` lets n of them finish. A step waits at most `limit_s` (a failing
    test never hangs the suite)."""

    def __init__(self, limit_s: float = 60.0):
        import threading

        self.entered = 0
        self._lock = threading.Lock()
        self._released = threading.Semaphore(0)
        self.limit_s = limit_s

    def wait_here(self) -> None:
        with self._lock:
            self.entered += 1
        self._released.acquire(timeout=self.limit_s)

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._released.release()


def gate_training_steps(monkeypatch) -> StepGate:
    """Every training step waits in a StepGate (patched into the loss computation, so the
    step is in flight: its update has not happened yet)."""
    from core.diffusion import GaussianDiffusion

    gate = StepGate()
    real = GaussianDiffusion.training_losses

    def training_losses(self, *args, **kwargs):
        gate.wait_here()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GaussianDiffusion, "training_losses", training_losses)
    return gate


def gate_sampling_steps(monkeypatch) -> StepGate:
    """Every sampling step of core.generate.sample waits in a StepGate."""
    import core.generate

    gate = StepGate()
    real = core.generate.run_steps

    def run_steps(*args, **kwargs):
        records = real(*args, **kwargs)
        try:
            while True:
                gate.wait_here()
                try:
                    record = next(records)
                except StopIteration:
                    return
                yield record
        finally:
            records.close()

    monkeypatch.setattr(core.generate, "run_steps", run_steps)
    return gate
