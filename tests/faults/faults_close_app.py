"""Opens the real main window, gets it busy, and closes it mid-work (run as a script).

    python faults_close_app.py MODE SETTINGS.ini CHECKPOINT

MODE "training": close while a run trains. "sampling": close while a long sampling run goes
on (training stopped). "saving": close while a checkpoint save is being written during a run
(the write is slowed down by half a second, like a slow disk). "long-step": close while one
training step takes LONG_STEP_S seconds (a huge model on a CPU); the step writes
CHECKPOINT + ".step-ended" when it ends. "long-step-saving": a save is requested during a
step of SAVE_STEP_S seconds, then the window closes: the save waits for the step, and the
exit waits for the save. Prints "closing ..." right before window.close() and "closed" after
the event loop has returned, then leaves the way the app does
(app.__main__.exit_now_if_closed_cleanly: os._exit unless a save is in flight).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

LONG_STEP_S = 60.0
SAVE_STEP_S = 2.0


def main() -> None:
    mode, settings_path, checkpoint = sys.argv[1:4]
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from app.__main__ import prewarm_torch

    prewarm_torch()
    import core.checkpoint
    from app.main_window import MainWindow
    from app.settings import make_settings
    from core.presets import load_preset

    write_started = threading.Event()
    if mode == "saving":
        real_save_file = core.checkpoint.save_file

        def slow_save_file(tensors, filename, metadata=None):
            write_started.set()
            time.sleep(0.5)
            real_save_file(tensors, filename, metadata=metadata)

        core.checkpoint.save_file = slow_save_file

    slow = threading.Event()            # set: the next training step is a long one
    in_long_step = threading.Event()
    if mode.startswith("long-step"):
        from core.diffusion import GaussianDiffusion

        real_losses = GaussianDiffusion.training_losses
        seconds = LONG_STEP_S if mode == "long-step" else SAVE_STEP_S

        def training_losses(self, *args, **kwargs):
            if slow.is_set() and not in_long_step.is_set():
                in_long_step.set()
                time.sleep(seconds)
                Path(checkpoint + ".step-ended").write_text("the long step ended")
            return real_losses(self, *args, **kwargs)

        GaussianDiffusion.training_losses = training_losses

    window = MainWindow(make_settings(settings_path), restore=False)
    window.show()
    cfg = load_preset("toy-2d")
    cfg.model.hidden, cfg.model.mlp_blocks = 32, 1
    cfg.diffusion.timesteps = 1000
    cfg.train.num_samples, cfg.train.batch_size, cfg.train.steps = 2000, 64, 10_000_000
    cfg.train.device = "cpu"
    window.experiment.set_config(cfg, preset=None)
    state = {"phase": "start"}

    def close(what: str) -> None:
        state["phase"] = "closing"
        print(f"closing during {what} at {time.monotonic():.6f}", flush=True)
        window.close()

    def poll() -> None:
        phase = state["phase"]
        trainer = window.session.trainer
        if phase == "start":
            if window.session.dataset is not None and window.controls.startButton.isEnabled():
                window.controls.startButton.click()
                state["phase"] = "training"
        elif phase == "training" and trainer is not None and trainer.step > 20:
            if mode == "training":
                close("training")
            elif mode.startswith("long-step"):
                slow.set()
                state["phase"] = "long step"
            elif mode == "sampling":
                window.stop_training()
                state["phase"] = "stopping"
            else:
                window.save_checkpoint(checkpoint)
                state["phase"] = "saving"
        elif phase == "stopping" and not window.training.is_active():
            panel = window.trajectory_panel
            panel.sampleStepsSpin.setValue(1000)
            panel.countSpin.setValue(2000)
            panel.sampleButton.click()
            state["phase"] = "sampling"
        elif phase == "sampling" and window.trajectory_panel.sampleProgress.value() > 0:
            assert window.sampling.is_active()
            close("sampling")
        elif phase == "long step" and in_long_step.is_set():
            if mode == "long-step-saving":
                window.save_checkpoint(checkpoint)      # queued behind the step in flight
                close(f"a long step with a save queued at step {trainer.step}")
            else:
                close("a long training step")
        elif phase == "saving" and write_started.is_set():
            assert window.training.is_active()
            close(f"a checkpoint save at step {trainer.step}")

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(20)
    QTimer.singleShot(90_000, app.quit)  # a hang guard, never reached when closing works
    app.exec()
    print(f"closed at {time.monotonic():.6f}", flush=True)
    from app.__main__ import exit_now_if_closed_cleanly

    exit_now_if_closed_cleanly(window, 0)


if __name__ == "__main__":
    main()
