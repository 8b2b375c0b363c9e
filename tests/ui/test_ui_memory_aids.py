"""Issue 15 in the window: the memory aids in the form (micro-batch, activation
checkpointing) reach the config without changing the model's signature, the out-of-memory
advice names the batch, the model size and both aids, and the status bar says which code
path ran training and sampling (and why a fallback happened) and the peak GPU memory."""

from __future__ import annotations

import torch
from PySide6.QtWidgets import QLabel
from ui_helpers import tiny_config, train

from app.errors import describe_training_error
from app.session import model_signature
from app.widgets.status import memory_text, path_texts


def test_the_memory_aid_fields_reach_the_config_and_keep_the_model(window, qtbot):
    form = window.experiment
    window.experiment.set_config(tiny_config(steps=20), preset=None)
    before = window.session.config
    assert form.microBatchSpin.text() == "whole batch"
    for field in (form.microBatchSpin, form.checkpointingCheck):
        assert field.toolTip().strip()
    assert "gradient" in form.microBatchSpin.toolTip()
    assert "recomputed" in form.checkpointingCheck.toolTip()
    form.microBatchSpin.setValue(16)
    form.checkpointingCheck.setChecked(True)
    cfg = window.session.config
    assert cfg.train.micro_batch == 16 and cfg.model.checkpointing is True
    assert model_signature(cfg) == model_signature(before)
    # a micro-batch that does not divide the batch is named by the form's label
    form.microBatchSpin.setValue(48)
    assert not window.session.config_valid
    assert form.error_text.startswith("⚠ Micro-batch:")
    form.microBatchSpin.setValue(0)
    assert window.session.config_valid
    # typing "whole batch" means 0
    form.microBatchSpin.lineEdit().setText("whole batch")
    form.microBatchSpin.interpretText()
    assert form.microBatchSpin.value() == 0


def test_a_model_continues_with_changed_memory_aids_and_the_status_bar_names_the_paths(
        window, qtbot):
    label = window.findChild(QLabel, "pathLabel")
    assert label is not None and label.text() == ""
    window.model_change_policy = "cancel"          # asking would cancel: it must not ask
    assert train(window, qtbot, tiny_config(steps=20)) == "finished"
    panel = window.trajectory_panel
    panel.set_params({"sampler": "ddim", "steps": 5, "n": 20})
    with qtbot.waitSignal(window.sampling_finished, timeout=30000):
        panel.sampleButton.click()
    window.device_status.update()
    assert "Training: eager (cpu" in label.text()
    assert "Sampling: eager (cpu)" in label.text()
    assert "Sampling ran on: eager (cpu)" in label.toolTip()
    assert window.memoryLabel.text() == ""                  # no GPU figure on a CPU
    trainer = window.session.trainer
    window.experiment.microBatchSpin.setValue(16)
    window.experiment.checkpointingCheck.setChecked(True)
    assert window.controls.startButton.text() == "Train 20 more"
    with qtbot.waitSignal(window.training_finished, timeout=60000) as blocker:
        window.controls.startButton.click()
    assert blocker.args[0] == "finished"
    assert window.session.trainer is trainer and trainer.step == 40
    assert trainer.config.train.micro_batch == 16 and trainer.config.model.checkpointing


def test_out_of_memory_in_training_names_the_batch_the_model_and_both_aids(window, qtbot):
    from core.training import Trainer

    cfg = tiny_config(steps=20)
    trainer = Trainer(cfg)
    parameters = sum(p.numel() for p in trainer.model.parameters())

    def out_of_memory(*_args, **_kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    trainer.run = out_of_memory
    with qtbot.waitSignal(window.error_shown, timeout=10000) as shown:
        window.training.start(lambda: trainer, 10)
    text = shown.args[0]
    assert text == describe_training_error(torch.cuda.OutOfMemoryError("x"), trainer)
    assert "a batch of 64 examples" in text
    assert f"{parameters / 1e6:.2f}M parameters" in text
    assert "“Micro-batch” to 16" in text and "“Checkpointing”" in text
    assert "train.micro_batch" not in text                 # the form's words, not config's
    qtbot.waitUntil(lambda: not window.training.is_active(), timeout=10000)


def test_a_fallback_shows_its_reason_and_the_gpu_figure_its_peak(monkeypatch):
    short, details = path_texts("CUDA graph: bf16 autocast",
                                "eager (cuda) [capture failed: host copy in the step]")
    assert short == "Training: CUDA graph: bf16 autocast · Sampling: eager (cuda) (fallback ⚠)"
    assert "why not faster: capture failed: host copy in the step" in details
    assert path_texts("", "") == ("", "")
    assert memory_text(torch.device("cpu")) == ""

    class Properties:
        total_memory = 80 * 2**30

    mib = 2**20
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda _d=None: 300 * mib)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda _d=None: 1200 * mib)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda _d=None: 1500 * mib)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _d=None: Properties())
    assert memory_text(torch.device("cuda")) == ("GPU memory 300 MiB used (peak 1,200) · "
                                                 "1,500 reserved / 81,920 MiB")
