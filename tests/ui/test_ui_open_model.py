"""File → Open model… (issue 18): a diffusers folder and an improved-diffusion .pt (through
the flags dialog, prefilled with the guess from its tensor shapes) become the window's
current model on data of their shape: the Model tab describes them, the VLB per t and
sampling run on them; data of another shape and bad folders are refused by name with
nothing changed; Fine-tune trains on from the opened weights; Export writes a diffusers
folder. The models are tiny (8x8, T = 10) so each test takes a few seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ui_helpers import gate_training_steps, tiny_config, train

from core.data import DATASETS
from core.interop import DOWNLOAD_HINT, flags_text, guess_flags_of, open_model

diffusers = pytest.importorskip("diffusers")

from interop_models import (  # noqa: E402  (after the skip: it imports diffusers)
    SMALL_SCHEDULER,
    improved_state_dict,
    random_unet,
    write_pipeline,
)

# 8x8 grey images, 10 classes, a learned variance, attention: small enough for a CPU test
TINY_UNET = {"sample_size": 8, "in_channels": 1, "out_channels": 2,
             "block_out_channels": [32, 32], "layers_per_block": 1,
             "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "attention_head_dim": 16,
             "num_class_embeds": 10, "norm_num_groups": 8}
TINY_SCHEDULER = {**SMALL_SCHEDULER, "num_train_timesteps": 10}
# the state dict's true flags; the guess from its tensors gets num_heads and T wrong
IMPROVED_FLAGS = ("--image_size 8 --in_channels 1 --num_channels 32 --num_res_blocks 1 "
                  "--channel_mult 1,2 --attention_resolutions 4 --num_heads 2 "
                  "--learn_sigma True --diffusion_steps 10 --noise_schedule cosine")
IMAGE_SETS = [name for name, spec in DATASETS.items() if spec.kind == "image"]
TOYS = [name for name, spec in DATASETS.items() if spec.kind == "vector" and spec.load]


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open-model") / "tiny-pipeline"
    return write_pipeline(folder, random_unet(TINY_UNET, seed=4), TINY_UNET, TINY_SCHEDULER)


def opener_of(window):
    return window.model_files.opener


def open_and_wait(window, qtbot, path, probed: bool = True):
    opener = opener_of(window)
    with qtbot.waitSignal(opener.model_ready, timeout=30000):
        opener.open_path(str(path))
    if probed:
        qtbot.waitUntil(lambda: len(window.session.probes) == 1, timeout=30000)
    return opener


def same_weights(a, b) -> bool:
    one, two = a.state_dict(), b.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[k].cpu(), two[k].cpu()) for k in one)


def select_dataset(window, name: str) -> None:
    combo = window.experiment.datasetCombo
    combo.setCurrentIndex(combo.findData(name))


def test_a_diffusers_folder_becomes_the_current_model(window, qtbot, tiny_pipeline):
    opener = open_and_wait(window, qtbot, tiny_pipeline)
    session, panel = window.session, window.model_panel
    source = panel.modelSource.toPlainText()
    assert panel.modelSource.isVisibleTo(panel)
    assert "format: diffusers pipeline" in source and "classes: 10" in source
    assert "data here: " in source and "1x8x8, 10 classes" in source
    assert "diffusion: T = 10, schedule cosine, mean_type v, variance_type learned_range" in source
    assert panel.item_count() > 10
    trainer = session.trainer
    assert trainer is opener.trainer and trainer.step == 0
    assert trainer.data_shape == (1, 8, 8) and trainer.num_classes == 10
    assert session.config.train.dataset in IMAGE_SETS
    assert same_weights(trainer.ema_model, opener.opened.model)
    assert same_weights(trainer.model, opener.opened.model)
    # the VLB per t of the opened weights: one probe, every t of the 10
    probe = session.probes[0]
    assert len(probe["t"]) == 10 and np.isfinite(probe["vlb"]).all()
    assert probe["log_var_mean"] is not None            # the learned Sigma_theta
    window.tabs.setCurrentWidget(window.vlb_panel)
    curve = window.vlb_panel.vlb_curve
    qtbot.waitUntil(lambda: curve.xData is not None and len(curve.xData) == 10)
    assert "opened model" in window.vlb_panel.note.text()
    learned = window.entropy_panel.learned_curve         # entropy with the learned Sigma_theta
    qtbot.waitUntil(lambda: learned.xData is not None and len(learned.xData) == 10)
    assert window.controls.startButton.text() == "Fine-tune"
    # trajectories sample from it
    window.trajectory_panel.set_params({"sampler": "ddim", "steps": 4, "n": 4, "seed": 0})
    with qtbot.waitSignal(window.sampling_finished, timeout=30000) as done:
        window.trajectory_panel.sampleButton.click()
    assert done.args == ["finished"]
    assert session.trajectory is not None and len(session.trajectory.timesteps) >= 2

    # data of another shape: refused naming both shapes, the opened model stays current
    with qtbot.waitSignal(window.error_shown, timeout=30000) as shown:
        select_dataset(window, TOYS[0])
    assert "1-channel (grey) 8×8 images (1×8×8)" in shown.args[0]
    assert "2-D points" in shown.args[0]
    assert session.trainer is trainer
    # another image set of its shape: the opened weights on those data
    other = next(name for name in IMAGE_SETS if name != trainer.dataset.name)
    with qtbot.waitSignal(opener.model_ready, timeout=30000):
        select_dataset(window, other)
    assert session.trainer.dataset.name == other
    assert same_weights(session.trainer.model, opener.opened.model)
    qtbot.waitUntil(lambda: len(session.probes) == 1, timeout=30000)    # its VLB, anew


def test_an_opened_model_is_in_open_recent_and_opens_again_from_there(window, qtbot,
                                                                      tiny_pipeline):
    opener = open_and_wait(window, qtbot, tiny_pipeline, probed=False)
    first = opener.opened
    actions = window.recent_menu.actions()
    assert window.recent_menu.isEnabled()
    assert [a.toolTip() for a in actions] == [str(tiny_pipeline)]
    with qtbot.waitSignal(opener.model_opened, timeout=30000) as opened:
        actions[0].trigger()
    assert opened.args == [first.title] and opener.opened is not first
    assert len(window.recent_menu.actions()) == 1          # the same entry, not a second


def test_a_state_dict_opens_through_the_flags_dialog(window, qtbot, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(improved_state_dict(IMPROVED_FLAGS, seed=5), path)
    menu = window.model_files
    menu.opener.open_path(str(path))
    qtbot.waitUntil(lambda: menu.dialog is not None and menu.dialog.isVisible(), timeout=20000)
    dialog = menu.dialog
    edit = dialog.findChild(type(dialog.flagsEdit), "flagsEdit")
    assert edit.toPlainText().split() == flags_text(guess_flags_of(path).flags).split()
    note = dialog.findChild(type(dialog.flagsCheckNote), "flagsCheckNote").text()
    for name in ("image_size", "num_heads", "diffusion_steps", "noise_schedule"):
        assert name in note and name in dialog.highlighter.names
    assert "num_channels" not in dialog.highlighter.names          # fixed by the tensors
    # a bad value is refused inline, naming the flag; the dialog stays open
    edit.setPlainText(IMPROVED_FLAGS.replace("--num_heads 2", "--num_heads two"))
    dialog.findChild(type(dialog.flagsOkButton), "flagsOkButton").click()
    error = dialog.findChild(type(dialog.flagsError), "flagsError")
    assert dialog.isVisible() and error.isVisibleTo(dialog) and "--num_heads 'two'" in error.text()
    edit.setPlainText(IMPROVED_FLAGS)
    with qtbot.waitSignal(menu.opener.model_ready, timeout=30000):
        dialog.findChild(type(dialog.flagsOkButton), "flagsOkButton").click()
    assert menu.dialog is None or not menu.dialog.isVisible()
    source = window.model_panel.modelSource.toPlainText()
    assert "format: improved-diffusion state dict" in source and "--num_heads 2" in source
    assert window.session.config.diffusion.timesteps == 10
    assert window.session.trainer.data_shape == (1, 8, 8)
    assert same_weights(window.session.trainer.model,
                        open_model(path, flags=IMPROVED_FLAGS).model)
    qtbot.waitUntil(lambda: len(window.session.probes) == 1, timeout=30000)


def test_a_bad_folder_is_refused_by_name_and_the_model_stays(window, qtbot, tmp_path):
    assert train(window, qtbot, tiny_config(steps=5)) == "finished"
    trainer, config = window.session.trainer, window.session.config.to_json()
    opener = opener_of(window)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad-unet"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(
        {**TINY_UNET, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]}))
    for path, words in ((empty, "without model_index.json"),
                        (bad, "CrossAttnDownBlock2D"),
                        ("google/ddpm-cifar10-32", DOWNLOAD_HINT)):
        with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
            opener.open_path(str(path))
        assert words in shown.args[0] and str(path).split("/")[-1] in shown.args[0]
        assert window.session.trainer is trainer
        assert window.session.config.to_json() == config
        assert window.session.model_source is None and opener.opened is None


def test_fine_tune_trains_on_from_the_opened_weights(window, qtbot, tiny_pipeline, tmp_path,
                                                     monkeypatch):
    opener = open_and_wait(window, qtbot, tiny_pipeline, probed=False)
    opened = opener.opened.model
    window.experiment.trainStepsSpin.setValue(2)
    window.experiment.batchSizeSpin.setValue(16)
    qtbot.waitUntil(lambda: window.session.config.train.steps == 2)
    trainer = window.session.trainer
    gate = gate_training_steps(monkeypatch)
    with qtbot.waitSignal(window.training_finished, timeout=60000) as finished:
        window.model_files.fine_tune_action.trigger()
        qtbot.waitUntil(lambda: gate.entered == 1, timeout=30000)
        # the first step is in flight: the network it trains is the opened one, unchanged
        assert window.session.trainer is trainer
        assert same_weights(trainer.model, opened)
        gate.release(2)
    assert finished.args == ["finished"] and trainer.step == 2
    assert np.isfinite(window.session.history.column("loss")).all()
    assert not same_weights(trainer.model, opened)
    assert window.session.model_source is not None          # still the opened model, tuned
    # Export → diffusers folder: the fine-tuned EMA weights, as diffusers' names
    folder = tmp_path / "exported"
    with qtbot.waitSignal(opener.exported, timeout=30000):
        opener.export(str(folder))
    assert same_weights(open_model(folder).model, trainer.ema_model)
