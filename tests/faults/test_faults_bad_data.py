"""Bad data: folders of junk, pictures of every size and mode, symlink loops, unreadable
paths, broken MNIST/CIFAR files. Each gives either a data set (with the bad files counted as
skipped) or a DataError naming the path and the problem; nothing hangs or blows up memory."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from faults_helpers import permissions_enforced
from PIL import Image

from core.data import DataError, get_dataset

ROOT = Path(__file__).resolve().parents[2]
BIG = 10_000


def picture(path: Path, size=(12, 12), mode="RGB", value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def two_good(folder: Path) -> None:
    picture(folder / "good1.png", value=(200, 30, 30))
    picture(folder / "good2.png", value=(30, 200, 30))


def test_zero_byte_and_renamed_non_images_are_skipped_and_counted(tmp_path):
    two_good(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    (tmp_path / "document.jpg").write_bytes(b"%PDF-1.7\n" + os.urandom(200))
    (tmp_path / "archive.webp").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (tmp_path / "half.png").write_bytes((tmp_path / "good1.png").read_bytes()[:40])
    (tmp_path / "README.txt").write_text("not even an image extension")
    dataset = get_dataset(str(tmp_path), image_size=8, grayscale=False)
    assert len(dataset.train) + len(dataset.test) == 2
    assert dataset.skipped == 5
    assert "5 unreadable files skipped" in dataset.describe()


def test_a_one_pixel_picture_is_stretched_to_a_flat_image(tmp_path):
    picture(tmp_path / "dot.png", size=(1, 1), value=(255, 0, 0))
    picture(tmp_path / "other.png", size=(3, 1), value=(0, 0, 255))
    dataset = get_dataset(str(tmp_path), image_size=8, grayscale=False, seed=0)
    images = np.concatenate([dataset.train.numpy(), dataset.test.numpy()])
    assert images.shape == (2, 3, 8, 8)
    red = [im for im in images if im[0].mean() > 0.5][0]
    np.testing.assert_allclose(red[0], 1.0, atol=1e-6)     # 255 -> 1
    np.testing.assert_allclose(red[1:], -1.0, atol=1e-6)   # 0 -> -1


def test_every_picture_mode_mixes_in_one_folder(tmp_path):
    picture(tmp_path / "grey.png", mode="L", value=255)
    picture(tmp_path / "bit.png", mode="1", value=1)
    picture(tmp_path / "rgb.jpg", mode="RGB", value=(255, 255, 255))
    rgba = Image.new("RGBA", (12, 12), (0, 0, 0, 0))        # fully transparent black
    rgba.save(tmp_path / "clear.png")
    palette = Image.new("P", (12, 12), 0)
    palette.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    palette.save(tmp_path / "palette.png")
    transparent = Image.new("P", (12, 12), 1)
    transparent.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    transparent.save(tmp_path / "palette-clear.png", transparency=1)
    Image.fromarray(np.full((12, 12), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (12, 12), (0, 0, 0, 0)).save(tmp_path / "print.jpg")
    Image.new("LA", (12, 12), (0, 0)).save(tmp_path / "grey-alpha.png")
    for grayscale, channels in ((True, 1), (False, 3)):
        dataset = get_dataset(str(tmp_path), image_size=8, grayscale=grayscale)
        images = np.concatenate([dataset.train.numpy(), dataset.test.numpy()])
        assert images.shape == (9, channels, 8, 8) and dataset.skipped == 0
        # every one of them is white: white pixels, or transparent ones over white
        np.testing.assert_allclose(images, 1.0, atol=0.02)


def _write_png(path: Path, width: int, height: int) -> None:
    """An RGB PNG written row by row (never held whole in memory): a diagonal gradient."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pattern = np.arange(width * 3, dtype=np.uint8)
    compressor = zlib.compressobj(1)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        parts = []
        for y in range(height):
            parts.append(compressor.compress(b"\x00" + np.roll(pattern, y).tobytes()))
        parts.append(compressor.flush())
        handle.write(chunk(b"IDAT", b"".join(parts)))
        handle.write(chunk(b"IEND", b""))


@pytest.mark.slow
def test_a_10000_pixel_picture_does_not_blow_up_memory(tmp_path):
    """Decoded whole, the PNG would take 300 MB (RGB) and the JPEG 100 MB; the loader skips the
    PNG (above Pillow's decompression-bomb limit) and decodes the JPEG at 1/8 scale."""
    png_folder, jpeg_folder = tmp_path / "png", tmp_path / "jpeg"
    two_good(png_folder)
    _write_png(png_folder / "huge.png", BIG, BIG)
    two_good(jpeg_folder)
    big = Image.new("L", (BIG, BIG), 0)
    big.paste(255, (0, 0, BIG // 2, BIG))                  # left half white
    big.save(jpeg_folder / "huge.jpg", quality=60)
    del big
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = Path(__file__).resolve().parent / "faults_big_image.py"
    done = subprocess.run([sys.executable, str(script), str(png_folder), str(jpeg_folder)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    png, jpeg = (json.loads(line) for line in done.stdout.splitlines())
    assert png["train"] + png["test"] == 2 and png["skipped"] == 1, png
    assert jpeg["train"] + jpeg["test"] == 3 and jpeg["skipped"] == 0, jpeg
    assert png["grown_mib"] < 64, png
    assert jpeg["grown_mib"] < 64, jpeg


def test_symlink_loops_terminate_and_count_each_file_once(tmp_path):
    two_good(tmp_path / "a")
    (tmp_path / "a" / "back-to-top").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a" / "itself").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "to-a").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "self.png").symlink_to(tmp_path / "self.png")           # ELOOP
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    dataset = run_with_deadline(lambda: get_dataset(str(tmp_path), image_size=8))
    assert len(dataset.train) + len(dataset.test) == 2
    assert dataset.skipped == 2


def run_with_deadline(fn, seconds: float = 60.0):
    """fn() in a daemon thread: a hang fails the test instead of freezing the suite."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_named_pipe_called_png_is_skipped_not_waited_on(tmp_path):
    two_good(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    try:
        dataset = run_with_deadline(lambda: get_dataset(str(tmp_path), image_size=8), 30)
    finally:
        # release a reader stuck in open() (only when the loader waited on the pipe)
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if _has_reader(fifo) else None
        if descriptor is not None:
            os.close(descriptor)
    assert len(dataset.train) + len(dataset.test) == 2 and dataset.skipped == 1


def _has_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def test_empty_and_useless_folders_name_the_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no usable image") as info:
        get_dataset(str(empty), image_size=8)
    assert str(empty) in str(info.value)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"")
    (junk / "b.txt").write_text("x")
    with pytest.raises(DataError, match=r"no usable image.*1 could not be read") as info:
        get_dataset(str(junk), image_size=8)
    assert str(junk) in str(info.value)
    one = tmp_path / "one"
    picture(one / "only.png")
    with pytest.raises(DataError, match="only 1 usable image"):
        get_dataset(str(one), image_size=8)


def test_unreadable_folder_file_and_idx_are_data_errors(tmp_path):
    locked_folder = tmp_path / "locked-folder"
    two_good(locked_folder)
    mixed = tmp_path / "mixed"
    two_good(mixed)
    locked_picture = picture(mixed / "locked.png")
    idx = tmp_path / "train-images-idx3-ubyte"
    write_idx(idx, np.zeros((4, 28, 28), np.uint8))
    for path in (locked_folder, locked_picture, idx):
        path.chmod(0)
    try:
        with permissions_enforced(tmp_path):
            for path in (locked_folder, idx):
                with pytest.raises(DataError) as info:
                    get_dataset(str(path), image_size=8)
                assert str(path) in str(info.value) and "ermission denied" in str(info.value)
            dataset = get_dataset(str(mixed), image_size=8)
            assert dataset.skipped == 1 and len(dataset.train) + len(dataset.test) == 2
    finally:
        for path in (locked_folder, locked_picture, idx):
            path.chmod(0o755)


# ---------------------------------------------------------------------- MNIST / CIFAR files
def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> bytes:
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(">u1" if code == 0x08 else array.dtype).tobytes()
    path.write_bytes(data)
    return data


def test_truncated_and_wrong_magic_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    good = write_idx(tmp_path / "good-images-idx3-ubyte", images)
    cases = {}
    for cut in (0, 2, 3, 4, 8, 12, 15, 16, 16 + 28 * 28 * 3, len(good) - 1):
        cases[f"cut{cut}"] = good[:cut]
    cases["zip-magic"] = b"PK\x03\x04" + good[4:]
    cases["bad-type"] = b"\x00\x00\x0a\x03" + good[4:]
    cases["labels-as-images"] = b"\x00\x00\x08\x01" + struct.pack(">I", 4) + bytes(4)
    cases["lying-header"] = good[:4] + struct.pack(">3I", 2**31, 28, 28) + good[16:]
    cases["extra-bytes"] = good + b"\x00" * 7
    cases["gz-truncated"] = gzip.compress(good)[:50]
    cases["gz-garbage"] = b"\x1f\x8b" + os.urandom(100)
    for name, content in cases.items():
        suffix = ".gz" if name.startswith("gz") else ""
        path = tmp_path / f"{name}-images-idx3-ubyte{suffix}"
        path.write_bytes(content)
        with pytest.raises(DataError) as info:
            get_dataset(str(path), image_size=None)
        assert path.name in str(info.value), f"{name}: {info.value}"
        folder = tmp_path / f"folder-{name}"               # the same file inside a folder
        folder.mkdir()
        (folder / path.name).write_bytes(content)
        with pytest.raises(DataError) as info:
            get_dataset(str(folder), image_size=None)
        assert path.name in str(info.value), f"{name} in a folder: {info.value}"


def test_truncated_and_wrong_magic_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3, 4]}
    good = pickle.dumps(batch, protocol=2)
    cases = {f"cut{cut}": good[:cut] for cut in (1, 2, 10, len(good) // 2, len(good) - 1)}
    cases["wrong-magic"] = b"\x81" + good[1:]
    cases["no-labels"] = pickle.dumps({b"data": batch[b"data"]}, protocol=2)
    cases["wrong-shape"] = pickle.dumps({b"data": batch[b"data"][:, :100], b"labels": [0] * 5}, 2)
    cases["a-list"] = pickle.dumps([1, 2, 3], protocol=2)
    for name, content in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "data_batch_1").write_bytes(content)
        with pytest.raises(DataError) as info:
            get_dataset(str(folder), image_size=None)
        assert "data_batch_1" in str(info.value), f"{name}: {info.value}"
        single = tmp_path / f"{name}.batch"
        single.write_bytes(content)
        with pytest.raises(DataError) as info:
            get_dataset(str(single), image_size=None)
        assert single.name in str(info.value), f"{name} as a file: {info.value}"


# ---------------------------------------------------------------------- through the window
def test_window_reports_a_bad_folder_and_keeps_its_data(window, qtbot, tmp_path):
    before = window.session.dataset
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "empty.png").write_bytes(b"")
    with qtbot.waitSignal(window.error_shown, timeout=20000) as shown:
        window.experiment.add_dataset_path(str(junk))
    assert str(junk) in shown.args[0] and "no usable image" in shown.args[0]
    assert "Traceback" not in shown.args[0]
    assert window.session.dataset is before and window.banner.isVisible()
