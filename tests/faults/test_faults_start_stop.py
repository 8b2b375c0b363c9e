"""Start/stop spam: 50 rapid Start / Pause / Resume / Stop sequences through the window, with
sampling started in between. No crash, no error banner, no thread left behind, finite
weights, and a step counter that agrees with the history, the curves and the progress bar."""

from __future__ import annotations

import gc
import os
import random
import threading

import pytest
from faults_helpers import assert_finite_weights, assert_history_consistent, tiny_config
from PySide6.QtCore import QCoreApplication, QEvent, QThread

SEQUENCES = 50


def thread_counts(window) -> dict[str, int]:
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    qthreads = [o for o in gc.get_objects() if issubclass(type(o), QThread)]
    return {"python threads": threading.active_count(),
            "OS threads": len(os.listdir("/proc/self/task")),
            "QThreads parented to the window": len(window.findChildren(QThread)),
            "QThread objects alive": len(qthreads),
            "QThreads running": sum(t.isRunning() for t in qthreads)}


def idle(window) -> bool:
    return (not window.training.is_active() and not window.sampling.is_active()
            and not window.jobs.busy())


@pytest.mark.slow
def test_fifty_rapid_start_pause_resume_stop_sequences_with_sampling(window, qtbot):
    errors = []
    window.error_shown.connect(errors.append)
    window.experiment.set_config(tiny_config(steps=10_000_000, log_every=3), preset=None)
    panel = window.trajectory_panel
    panel.sampleStepsSpin.setValue(20)
    panel.countSpin.setValue(30)
    qtbot.waitUntil(lambda: idle(window) and window.controls.startButton.isEnabled(), timeout=30000)
    qtbot.wait(300)                        # debounce timers of the new config have fired
    qtbot.waitUntil(lambda: idle(window), timeout=30000)
    before = thread_counts(window)
    assert before["QThreads running"] == 0, before
    c = window.controls
    rng = random.Random(50)
    for sequence in range(SEQUENCES):
        c.startButton.click()
        window.start_training()            # a second Start (keyboard, double click): ignored
        if sequence == 0:                  # the counters do see a running worker
            during = thread_counts(window)
            assert during["QThreads running"] >= 1 and during["QThread objects alive"] >= 1
            assert during["QThreads parented to the window"] >= 1
        qtbot.wait(rng.choice([0, 1, 5, 30]))
        c.pauseButton.click()              # Pause (ignored while still starting)
        if sequence % 3 == 0:
            panel.sampleButton.click()     # sampling in between, from the EMA snapshot
            window.sample()                # twice: the second request must be ignored
        qtbot.wait(rng.choice([0, 2, 10]))
        c.pauseButton.click()              # Resume
        window.toggle_pause()              # Pause again ...
        window.toggle_pause()              # ... and Resume, straight from the window
        if sequence % 5 == 4:
            c.stopButton.click()
            c.startButton.click()          # Start while stopping: ignored
        c.stopButton.click()
        window.stop_training()             # Stop twice
        qtbot.waitUntil(lambda: not window.training.is_active(), timeout=30000)
    qtbot.waitUntil(lambda: idle(window), timeout=30000)
    qtbot.wait(100)
    assert errors == [], errors
    trainer = window.session.trainer
    assert window.training.state in ("stopped", "finished")
    assert trainer.step > 0
    assert_finite_weights(trainer)
    assert_history_consistent(trainer)
    assert len(window.session.history) == trainer.step
    assert list(window.session.history.column("step")) == list(range(1, trainer.step + 1))
    assert window.controls.trainProgress.value() == trainer.step
    assert window.session.trajectory is not None and window.session.trajectory.completed
    after = thread_counts(window)
    assert after == before, f"threads before {before}, after {after}"
    # and the window still trains normally
    window.experiment.trainStepsSpin.setValue(trainer.step + 10)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as done:
        c.startButton.click()
    assert done.args == ["finished"]
    assert_history_consistent(trainer)
