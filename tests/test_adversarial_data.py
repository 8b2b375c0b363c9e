"""Red team, data files (issue 14): labels and sizes stated by IDX and CIFAR files are bounded
(a class index below MAX_CLASSES, no more classes than items, headers no larger than the
program reads), and each refusal is a DataError naming the file."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from test_data_formats import idx_bytes, write_batch

import core.data as data_module
from core.data import DataError, get_dataset
from core.data.dataset import image_dataset
from core.data.formats import MAX_CLASSES

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C}


def write_idx_pair(folder, labels, n=None, gz=False, prefix="train"):
    """n 8x8 images and an idx1 labels file of labels' dtype beside them; the images path."""
    labels = np.asarray(labels)
    n = len(labels) if n is None else n
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    image_path = folder / f"{prefix}-images-idx3-ubyte{suffix}"
    image_path.write_bytes(pack(idx_bytes(images)))
    (folder / f"{prefix}-labels-idx1-ubyte{suffix}").write_bytes(
        pack(idx_bytes(labels, IDX_CODES[labels.dtype])))
    return image_path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("labels", [
    np.array([0, 1, 2, 2**31 - 1], np.int32), np.array([0, 1, MAX_CLASSES], np.int32),
    np.array([0, 32767, 1], np.int16), np.array([5, 10**9], np.int32),
])
def test_idx_labels_beyond_max_classes_name_the_labels_file(tmp_path, labels, gz):
    path = write_idx_pair(tmp_path, labels, gz=gz)
    with pytest.raises(DataError, match="a class index must be below 10,000") as info:
        get_dataset(path, image_size=None)
    assert "train-labels-idx1-ubyte" in str(info.value)


@pytest.mark.parametrize("labels", [np.array([0, 1, 11], np.uint8), np.array([0, 200], np.uint8),
                                    np.array([3, 9999, 0, 1], np.int16)])
def test_idx_labels_cannot_make_more_classes_than_items(tmp_path, labels):
    path = write_idx_pair(tmp_path, labels)
    with pytest.raises(DataError, match=r"classes for \d+ items") as info:
        get_dataset(path, image_size=None)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_an_idx_folder_with_a_huge_label_names_a_file(tmp_path):
    write_idx_pair(tmp_path, np.array([0, 1, 2], np.uint8), prefix="train")
    write_idx_pair(tmp_path, np.array([0, 2**31 - 1], np.int32), prefix="t10k")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: label 2,147,483,647"):
        get_dataset(tmp_path, image_size=None)


def test_ten_classes_for_a_few_items_are_still_fine(tmp_path):
    """A few items of MNIST keep their ten classes (labels up to 9)."""
    data = get_dataset(write_idx_pair(tmp_path, np.array([0, 9, 3], np.uint8)), image_size=None)
    assert data.num_classes == 10


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims", [(10**9, 28, 28), (1, 2**32 - 1, 2**32 - 1), (2**31, 2, 2)])
def test_an_idx_header_claiming_gigabytes_is_refused_before_reading(tmp_path, dims, gz):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", *dims)
    body = header + bytes(64)
    path = tmp_path / f"claims-images-idx3-ubyte{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(body) if gz else body)
    with pytest.raises(DataError, match="claims-images-idx3-ubyte") as info:
        get_dataset(path, image_size=None)
    assert "bytes of data" in str(info.value) or "does not match its header" in str(info.value)


def test_native_idx_images_larger_than_max_image_size_need_an_image_size(tmp_path):
    images = np.zeros((2, 600, 600), np.uint8)
    path = tmp_path / "big-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    with pytest.raises(DataError, match="big-images-idx3-ubyte: its images are 600x600"):
        get_dataset(path, image_size=None)
    assert get_dataset(path, image_size=16).shape == (1, 16, 16)


def cifar_data(n):
    return np.random.default_rng(1).integers(0, 256, (n, 3072), dtype=np.uint8)


@pytest.mark.parametrize("labels, words, source", [
    ([0, 2**31 - 1], "label 2,147,483,647 is too large", "data_batch_1"),
    ([0, MAX_CLASSES], "a class index must be below 10,000", "data_batch_1"),
    ([0, 10**12], "too large", "data_batch_1"),
    ([0, 1, 12], "label 12 makes 13 classes for 3 items", "the folder"),
    ([0, 1, 9999], "makes 10,000 classes for 3 items", "the folder"),
])
def test_cifar_labels_are_bounded_and_name_the_source(tmp_path, labels, words, source):
    """A label beyond MAX_CLASSES names its batch file; too many classes for the items of
    the pooled batches name the folder (the data set)."""
    write_batch(tmp_path / "data_batch_1", cifar_data(len(labels)), labels, 2)
    with pytest.raises(DataError, match=words) as info:
        get_dataset(tmp_path, image_size=None)
    named = str(tmp_path / "data_batch_1") if source == "data_batch_1" else f"{tmp_path}:"
    assert str(info.value).startswith(named)


def test_a_cifar_meta_of_too_many_names_is_refused(tmp_path):
    write_batch(tmp_path / "data_batch_1", cifar_data(2), [0, 1], 2)
    meta = {b"label_names": [b"x"] * (MAX_CLASSES + 1)}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(DataError, match="batches.meta: 10,001 label_names"):
        get_dataset(tmp_path, image_size=None)


def test_a_folder_of_too_many_class_folders_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(data_module, "MAX_CLASSES", 2)          # instead of 10,001 folders
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8), 40).save(tmp_path / name / "x.png")
    with pytest.raises(DataError, match="3 sub-folders would be as many classes") as info:
        get_dataset(tmp_path, image_size=8)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("labels, num_classes", [([0, 5], 3), ([0, 1], 10**9), ([-1, 0], 2),
                                                 ([0, 1], 0)])
def test_every_image_source_meets_the_same_class_bound(labels, num_classes):
    images = np.zeros((2, 1, 4, 4), np.uint8)
    with pytest.raises(DataError, match="src: labels must be class indices"):
        image_dataset("x", images, 255, size=None, channels=1, seed=0,
                      labels=np.array(labels), num_classes=num_classes, source="src")
