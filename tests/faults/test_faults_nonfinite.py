"""Non-finite values: NaN/inf in a batch or in a gradient stops training with a readable
message; the last good weights, the step counter and the metric history stay consistent; the
window stays usable and the next run works."""

from __future__ import annotations

import math

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

from core.training import TrainingDiverged

LOG_EVERY = 10        # the injection lands between two metric reads


class Poison:
    """Injected through should_stop (polled before every step): at step `at` it records the
    state, then breaks the batch data ("batch") or the gradients ("gradient")."""

    def __init__(self, trainer, at: int, kind: str, value: float = float("nan")):
        self.trainer, self.at, self.kind, self.value = trainer, at, kind, value
        self.clean = trainer._train_x.clone()
        self.state = None
        self.hook = None

    def __call__(self) -> bool:
        if self.trainer.step == self.at and self.state is None:
            self.state = state_of(self.trainer)
            self.inject(self.trainer)
        return False

    def inject(self, trainer) -> None:
        if self.kind == "batch":
            trainer._train_x[:] = self.value
        else:
            first = next(trainer.model.parameters())
            self.hook = first.register_hook(lambda grad: torch.full_like(grad, self.value))

    def heal(self, trainer) -> None:
        if self.kind == "batch":
            trainer._train_x.copy_(self.clean)
        elif self.hook is not None:
            self.hook.remove()


@pytest.mark.parametrize("kind, value, quantity", [
    ("batch", float("nan"), "loss is nan"), ("batch", float("inf"), "loss is"),
    ("gradient", float("nan"), "gradient norm is nan"),
    ("gradient", float("inf"), "gradient norm is inf")])
def test_core_stops_at_the_bad_step_and_keeps_every_good_one(kind, value, quantity):
    trainer = core_trainer(log_every=LOG_EVERY)
    poison = Poison(trainer, at=13, kind=kind, value=value)
    rows = []
    with pytest.raises(TrainingDiverged) as info:
        trainer.run(40, on_metrics=rows.extend, should_stop=poison)
    message = str(info.value)
    assert "step 14" in message and quantity in message and "step 13 are kept" in message
    assert "train.lr" in message                          # and what to try
    assert info.value.good_step == 13 and trainer.step == 13
    assert_same_state(state_of(trainer), poison.state)   # the last good weights, untouched
    assert_finite_weights(trainer)
    assert_history_consistent(trainer)                   # steps 11-13 were not lost
    assert [r["step"] for r in rows] == list(range(1, 14))
    poison.heal(trainer)                                  # fixed: the next run goes on
    assert trainer.run(5) == "finished"
    assert trainer.step == 18
    assert_history_consistent(trainer)
    assert_finite_weights(trainer)


def test_core_deferred_checks_roll_back_to_the_last_read(monkeypatch):
    """The CUDA code path (checks every log_every steps), exercised on the CPU."""
    trainer = core_trainer(log_every=LOG_EVERY)
    trainer._deferred_checks = True
    trainer.run(10)
    good = state_of(trainer)
    poison = Poison(trainer, at=13, kind="batch")
    with pytest.raises(TrainingDiverged, match="step 14: the loss is nan.*step 10 are kept"):
        trainer.run(20, should_stop=poison)
    assert trainer.step == 10
    assert_same_state(state_of(trainer), good)
    assert_history_consistent(trainer)
    poison.heal(trainer)
    trainer.run(3)
    assert_history_consistent(trainer)


# ---------------------------------------------------------------------- through the window
def run_until_poisoned(window, qtbot, kind: str):
    cfg = tiny_config(steps=1_000_000, log_every=LOG_EVERY)
    window.experiment.set_config(cfg, preset=None)
    window.controls.startButton.click()
    qtbot.waitUntil(lambda: window.training.state == "running"
                    and window.session.trainer is not None
                    and window.session.trainer.step > 15, timeout=30000)
    trainer = window.session.trainer
    poison = Poison(trainer, at=-1, kind=kind)

    def inject(tr):                       # runs in the worker thread, between two steps
        poison.at = tr.step
        poison.state = state_of(tr)
        poison.inject(tr)

    with qtbot.waitSignal(window.error_shown, timeout=30000) as shown:
        window.training.submit("poison", inject)
    qtbot.waitUntil(lambda: not window.training.is_active(), timeout=10000)
    return trainer, poison, shown.args[0]


@pytest.mark.parametrize("kind, quantity", [("batch", "the loss is nan"),
                                            ("gradient", "the gradient norm is nan")])
def test_window_reports_divergence_keeps_the_weights_and_trains_again(window, qtbot, kind,
                                                                     quantity):
    trainer, poison, message = run_until_poisoned(window, qtbot, kind)
    assert message.startswith("Training failed: training diverged at step")
    assert quantity in message and f"the weights of step {poison.at} are kept" in message
    assert "Traceback" not in message and "\n" not in message
    assert window.banner.isVisible() and quantity in window.banner.label.text()
    assert window.training.state == "failed"
    assert window.session.trainer is trainer and trainer.step == poison.at
    assert_same_state(state_of(trainer), poison.state)
    assert_finite_weights(trainer)
    assert_history_consistent(trainer)
    assert len(window.session.history) == trainer.step     # the curves lost no step either
    assert window.controls.startButton.isEnabled()
    # the user fixes the cause and presses Start: the same run goes on and finishes
    poison.heal(trainer)
    window.experiment.trainStepsSpin.setValue(trainer.step + 20)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as done:
        window.controls.startButton.click()
    assert done.args == ["finished"] and window.session.trainer is trainer
    assert trainer.step == poison.at + 20
    assert_history_consistent(trainer)
    assert len(window.session.history) == trainer.step
    assert all(math.isfinite(v) for v in window.session.history.column("loss"))
    assert not window.banner.isVisible()
