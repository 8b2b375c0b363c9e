"""Bad checkpoints: every broken, foreign or unreachable file gives a CheckpointError that
names the file, and changes nothing, through core.checkpoint and through the window."""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct

import pytest
import torch
from checkpoint_files import rewrite
from faults_helpers import (
    assert_history_consistent,
    assert_same_state,
    core_trainer,
    permissions_enforced,
    state_of,
    tiny_config,
)
from PIL import Image
from safetensors.torch import save_file

from core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    restore_trainer,
    save_checkpoint,
)


def header_length(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def bad_files(good, folder) -> dict[str, tuple]:
    """name -> (path, words the error must contain)."""
    data = good.read_bytes()
    end = 8 + header_length(data)
    rng = random.Random(6)
    files = {}

    def write(name, content, words):
        path = folder / f"{name}.safetensors"
        path.write_bytes(content)
        files[name] = (path, words)

    write("empty", b"", "is empty")
    for offset in (1, 7, 8, 8 + (end - 8) // 2, end, end + 1, (end + len(data)) // 2, len(data) - 1):
        write(f"truncated-at-{offset}", data[:offset], "truncated or corrupt")
    write("random-bytes", rng.randbytes(4096), "truncated or corrupt")
    write("huge-header-length", struct.pack("<Q", 2**62) + rng.randbytes(64), "truncated or corrupt")
    write("json-text", b'{"model": {"hidden": 32}}\n', "truncated or corrupt")
    flipped = bytearray(data)
    flipped[-5] ^= 0x55
    write("flipped-byte", bytes(flipped), "checksum")
    png = folder / "picture.safetensors"
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    files["png-renamed"] = (png, "truncated or corrupt")
    foreign = folder / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign))
    files["foreign-safetensors"] = (foreign, "not a Diffusion Explorer checkpoint")
    other = folder / "other-tool.safetensors"
    save_file({"w": torch.ones(2)}, str(other), metadata={"format": "pt"})
    files["other-tool-metadata"] = (other, "not a Diffusion Explorer checkpoint")

    def newer(meta):
        meta["format_version"] = str(FORMAT_VERSION + 1)

    def other_architecture(meta):
        config = json.loads(meta["config"])
        config["model"]["hidden"] = 48
        meta["config"] = json.dumps(config)

    def no_config(meta):
        del meta["config"]

    files["newer-format"] = (rewrite(good, folder / "newer.safetensors", newer), "newer version")
    files["architecture-mismatch"] = (rewrite(good, folder / "arch.safetensors", other_architecture),
                                      "do not match the architecture")
    files["no-config"] = (rewrite(good, folder / "noconfig.safetensors", no_config),
                          "lacks the metadata field 'config'")
    files["missing"] = (folder / "absent.safetensors", "does not exist")
    files["folder"] = (folder, "is a folder")
    return files


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    trainer = core_trainer(steps=4)
    path = folder / "good.safetensors"
    save_checkpoint(path, trainer)
    return path


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_bad_file_names_itself_and_changes_nothing(good_checkpoint, tmp_path):
    trainer = core_trainer(steps=2)
    state, history = state_of(trainer), {k: list(v) for k, v in trainer.history.items()}
    cases = bad_files(good_checkpoint, tmp_path)
    assert len(cases) >= 20
    for name, (path, words) in cases.items():
        before = sha(path) if path.is_file() else None
        with pytest.raises(CheckpointError) as info:
            restore_trainer(trainer, load_checkpoint(path))
        message = str(info.value)
        assert str(path) in message and words in message, f"{name}: {message}"
        assert "\n" not in message, name
        assert_same_state(state_of(trainer), state)
        assert trainer.step == 2 and trainer.history == history
        if before is not None:
            assert sha(path) == before, f"{name}: loading changed the file"
    assert_same_state(state_of(core_trainer(steps=2)), state)  # as if nothing had happened
    trainer.run(2)                                             # and it still trains
    assert_history_consistent(trainer)


def test_a_checkpoint_of_another_architecture_is_refused_by_a_running_trainer(tmp_path):
    other = core_trainer(steps=3)
    other.config.model.hidden = 48                      # describe a different network ...
    other = type(other)(other.config, dataset=other.dataset)
    other.run(3)
    path = tmp_path / "other.safetensors"
    save_checkpoint(path, other)                        # ... a valid checkpoint of it
    trainer = core_trainer(steps=2)
    state = state_of(trainer)
    with pytest.raises(CheckpointError, match=r"different model settings \(hidden: 48 in the file, 32 here") as info:
        restore_trainer(trainer, load_checkpoint(path))
    assert str(path) in str(info.value)
    assert_same_state(state_of(trainer), state)


def test_unreadable_file_and_read_only_folder(good_checkpoint, tmp_path):
    trainer = core_trainer(steps=2)
    state = state_of(trainer)
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(good_checkpoint.read_bytes())
    locked.chmod(0)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    previous = read_only / "run.safetensors"
    previous.write_bytes(good_checkpoint.read_bytes())
    read_only.chmod(0o555)
    try:
        with permissions_enforced(tmp_path):
            with pytest.raises(CheckpointError, match="cannot be read.*Permission denied") as info:
                load_checkpoint(locked)
            assert str(locked) in str(info.value)
            with pytest.raises(CheckpointError, match="Permission denied.*previous checkpoint "
                                                      "there is unchanged") as info:
                save_checkpoint(previous, trainer)
            assert str(previous) in str(info.value)
            with pytest.raises(CheckpointError, match="no checkpoint was written"):
                save_checkpoint(read_only / "new.safetensors", trainer)
    finally:
        read_only.chmod(0o755)
        locked.chmod(0o600)
    assert sha(previous) == sha(good_checkpoint)
    assert sorted(os.listdir(read_only)) == ["run.safetensors"]
    assert_same_state(state_of(trainer), state)


def test_saving_to_a_missing_folder_or_onto_a_folder(tmp_path):
    trainer = core_trainer(steps=1)
    with pytest.raises(CheckpointError, match="does not exist") as info:
        save_checkpoint(tmp_path / "nope" / "x.safetensors", trainer)
    assert "x.safetensors" in str(info.value)
    (tmp_path / "taken.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        save_checkpoint(tmp_path / "taken.safetensors", trainer)
    assert sorted(os.listdir(tmp_path)) == ["taken.safetensors"]


# ---------------------------------------------------------------------- through the window
def window_state(window):
    return (window.session.trainer, window.session.config.to_json(), len(window.session.history),
            window.settings.value("recentFiles", []))


def test_window_open_reports_each_bad_file_and_keeps_its_run(window, qtbot, good_checkpoint,
                                                            tmp_path):
    window.experiment.set_config(tiny_config(steps=15), preset=None)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.startButton.click()
    trainer = window.session.trainer
    before, weights = window_state(window), state_of(trainer)
    cases = bad_files(good_checkpoint, tmp_path)
    chosen = ["empty", "truncated-at-8", f"truncated-at-{len(good_checkpoint.read_bytes()) - 1}",
              "random-bytes", "png-renamed", "foreign-safetensors", "newer-format",
              "architecture-mismatch", "flipped-byte", "missing", "folder"]
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(good_checkpoint.read_bytes())
    locked.chmod(0)
    try:
        for name in chosen + ["locked"]:
            path = locked if name == "locked" else cases[name][0]
            with permissions_enforced(tmp_path):
                with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
                    window.load_checkpoint(str(path))   # its job thread inherits the block's rights
            assert str(path) in shown.args[0], f"{name}: {shown.args[0]}"
            if name == "locked":
                assert "cannot be read (Permission denied)" in shown.args[0]
            assert window.banner.isVisible()
            assert window_state(window) == before, name
            assert window.controls.startButton.isEnabled()
            qtbot.waitUntil(lambda: not window.jobs.busy("checkpoint"), timeout=10000)
    finally:
        locked.chmod(0o600)
    assert_same_state(state_of(trainer), weights)
    # the window still works: the good file opens, and training continues from it
    with qtbot.waitSignal(window.checkpoint_loaded, timeout=20000):
        window.load_checkpoint(str(good_checkpoint))
    assert window.session.trainer.step == 4 and not window.banner.isVisible()
    window.experiment.trainStepsSpin.setValue(10)
    with qtbot.waitSignal(window.training_finished, timeout=30000) as done:
        window.controls.startButton.click()
    assert done.args == ["finished"] and window.session.trainer.step == 10
    assert_history_consistent(window.session.trainer)


def test_window_save_into_a_read_only_folder_is_reported(window, qtbot, tmp_path):
    window.experiment.set_config(tiny_config(steps=5), preset=None)
    with qtbot.waitSignal(window.training_finished, timeout=30000):
        window.controls.startButton.click()
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    target = folder / "run.safetensors"
    try:
        with permissions_enforced(tmp_path):
            with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
                window.save_checkpoint(str(target))
            qtbot.waitUntil(lambda: not window.jobs.busy(), timeout=10000)
    finally:
        folder.chmod(0o755)
    assert str(target) in shown.args[0] and "Permission denied" in shown.args[0]
    assert os.listdir(folder) == []
