"""Out of memory inside a training step and inside sampling: torch.cuda.OutOfMemoryError, a
real CPU allocation failure (torch's "can't allocate memory") and the Windows wording ("not
enough memory"). The user is told what to shrink, nothing is lost, and the next run works."""

from __future__ import annotations

import threading

import pytest
import torch
from faults_helpers import (
    assert_finite_weights,
    assert_history_consistent,
    assert_same_state,
    core_trainer,
    state_of,
    tiny_config,
)

import core.generate
from core.diffusion import GaussianDiffusion


def cuda_oom():
    raise torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "7.79 GiB of which 1.21 GiB is free.")


def cpu_oom():
    torch.empty(2**50, dtype=torch.uint8)   # a real allocation failure of torch's CPU allocator
    raise AssertionError("a petabyte was allocated")


def windows_cpu_oom():
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not "
                       "enough memory: you tried to allocate 1073741824 bytes.")


ERRORS = {"cuda": cuda_oom, "cpu": cpu_oom, "cpu-windows": windows_cpu_oom}


class Fault:
    """Armed from any thread; the next call of the patched function records the trainer's
    state (the step that fails has not changed it yet) and raises the error."""

    def __init__(self, error):
        self.error = error
        self.armed = threading.Event()
        self.trainer = None
        self.state = None
        self.step = None

    def fire_if_armed(self) -> None:
        if self.armed.is_set():
            self.armed.clear()
            if self.trainer is not None:
                self.step, self.state = self.trainer.step, state_of(self.trainer)
            self.error()


@pytest.fixture
def fault_in_step(request, monkeypatch):
    fault = Fault(ERRORS[request.param])
    real = GaussianDiffusion.training_losses

    def training_losses(self, *args, **kwargs):
        fault.fire_if_armed()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GaussianDiffusion, "training_losses", training_losses)
    return fault


@pytest.fixture
def fault_in_sampling(request, monkeypatch):
    fault = Fault(ERRORS[request.param])
    real = core.generate.run_steps

    def run_steps(*args, **kwargs):
        records = real(*args, **kwargs)
        yield next(records)          # a step or two succeed, then memory runs out
        fault.fire_if_armed()
        yield from records

    monkeypatch.setattr(core.generate, "run_steps", run_steps)
    return fault


@pytest.mark.parametrize("fault_in_step", sorted(ERRORS), indirect=True)
def test_core_step_out_of_memory_changes_nothing(fault_in_step):
    trainer = core_trainer(log_every=10)
    trainer.run(13)
    fault_in_step.trainer = trainer
    fault_in_step.armed.set()
    with pytest.raises((RuntimeError, torch.cuda.OutOfMemoryError)):
        trainer.run(10)
    assert trainer.step == fault_in_step.step == 13
    assert_same_state(state_of(trainer), fault_in_step.state)
    assert_history_consistent(trainer)
    assert trainer.run(5) == "finished" and trainer.step == 18
    assert_history_consistent(trainer)


def advice_in(message: str, action: str) -> None:
    """The message says what failed and what to shrink, by the form's labels for training
    (app.errors: the batch, the model size and the memory aids) and the sample count for
    sampling; no traceback or allocator text."""
    assert message.startswith(f"{action} failed: Out of memory"), message
    lower = message.lower()
    assert "batch size" in lower and "model size" in lower, message
    if action == "Sampling":
        assert "fewer samples" in lower, message
    assert "Traceback" not in message and "enforce fail" not in message


@pytest.mark.parametrize("fault_in_step", ["cuda", "cpu"], indirect=True)
def test_window_training_out_of_memory_advises_and_the_next_run_works(window, qtbot, fault_in_step):
    window.experiment.set_config(tiny_config(steps=1_000_000, log_every=10), preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and window.session.trainer.step > 15, timeout=30000)
    trainer = window.session.trainer
    fault_in_step.trainer = trainer
    with qtbot.waitSignal(window.error_shown, timeout=30000) as shown:
        fault_in_step.armed.set()
    advice_in(shown.args[0], "Training")
    qtbot.waitUntil(lambda: not window.training.is_active(), timeout=10000)
    assert window.training.state == "failed" and window.banner.isVisible()
    assert window.session.trainer is trainer and trainer.step == fault_in_step.step
    assert_same_state(state_of(trainer), fault_in_step.state)      # nothing lost
    assert_history_consistent(trainer)
    assert len(window.session.history) == trainer.step
    window.experiment.trainStepsSpin.setValue(trainer.step + 15)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as done:
        window.controls.startButton.click()
    assert done.args == ["finished"] and trainer.step == fault_in_step.step + 15
    assert_history_consistent(trainer)
    assert_finite_weights(trainer)


def sample(window, qtbot, steps=10, count=50):
    panel = window.trajectory_panel
    panel.sampleStepsSpin.setValue(steps)
    panel.countSpin.setValue(count)
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as done:
        panel.sampleButton.click()
    return done.args[0]


@pytest.mark.parametrize("fault_in_sampling", ["cpu-windows"], indirect=True)
def test_window_sampling_out_of_memory_keeps_the_last_trajectory(window, qtbot, fault_in_sampling):
    window.experiment.set_config(tiny_config(steps=20), preset=None)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.startButton.click()
    trainer = window.session.trainer
    state = state_of(trainer)
    assert sample(window, qtbot) == "finished"
    previous = window.session.trajectory
    fault_in_sampling.armed.set()
    with qtbot.waitSignal(window.error_shown, timeout=30000) as shown:
        window.trajectory_panel.sampleButton.click()
    advice_in(shown.args[0], "Sampling")
    qtbot.waitUntil(lambda: not window.sampling.is_active(), timeout=10000)
    assert window.session.trajectory is previous                   # the last result stays
    assert window.trajectory_panel.sampleButton.isEnabled()
    assert_same_state(state_of(trainer), state)
    assert sample(window, qtbot, steps=5, count=20) == "finished"  # the next run works
    assert window.session.trajectory.x.shape == (6, 20, 2)


@pytest.mark.parametrize("fault_in_sampling", ["cuda"], indirect=True)
def test_window_sampling_out_of_memory_while_training_leaves_training_running(window, qtbot,
                                                                              fault_in_sampling):
    window.experiment.set_config(tiny_config(steps=1_000_000), preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and window.session.trainer.step > 3, timeout=30000)
    fault_in_sampling.armed.set()
    with qtbot.waitSignal(window.error_shown, timeout=30000) as shown:
        window.trajectory_panel.sampleButton.click()
    advice_in(shown.args[0], "Sampling")
    step = window.session.trainer.step
    qtbot.waitUntil(lambda: window.session.trainer.step > step + 5, timeout=30000)
    assert window.training.state == "running"
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.stopButton.click()
    assert_history_consistent(window.session.trainer)
