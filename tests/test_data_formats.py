"""core.data file formats: IDX (MNIST) files written here byte by byte, and CIFAR python
batches read through the restricted unpickler (which must refuse anything but arrays)."""

import codecs
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from core.data import DataError, get_dataset, to_uint8_images
from core.data.formats import read_cifar_batch, read_idx


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX as specified by LeCun: 0, 0, type code, ndim, big-endian uint32 sizes, data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_pair(folder, prefix: str, images: np.ndarray, labels: np.ndarray | None, gz: bool = False):
    suffix = ".gz" if gz else ""
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gz else (lambda p, b: p.write_bytes(b))
    image_path = folder / f"{prefix}-images-idx3-ubyte{suffix}"
    write(image_path, idx_bytes(images))
    if labels is not None:
        write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
    return image_path


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


def contents(data) -> list[tuple[int, bytes]]:
    """Sorted (label, uint8 picture bytes) of both splits: independent of the split order."""
    pictures = to_uint8_images(torch.cat([data.train, data.test]))
    labels = torch.cat([data.train_labels, data.test_labels]).tolist()
    return sorted((label, p.tobytes()) for label, p in zip(labels, pictures, strict=True))


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_with_labels(tmp_path, gz):
    images, labels = random_digits(20)
    path = write_mnist_pair(tmp_path, "train", images, labels, gz=gz)
    data = get_dataset(path, image_size=None, seed=3)
    assert data.train.shape == (18, 1, 28, 28) and data.test.shape == (2, 1, 28, 28)
    assert data.num_classes == int(labels.max()) + 1
    expected = sorted((int(label), image[..., None].tobytes()) for image, label in zip(images, labels, strict=True))
    assert contents(data) == expected
    padded = get_dataset(path, image_size=32, seed=3)
    assert torch.equal(padded.train[:, :, 2:30, 2:30], data.train)


def test_idx_without_labels_and_other_dtypes(tmp_path):
    images, _ = random_digits(5)
    path = write_mnist_pair(tmp_path, "t10k", images, None)
    data = get_dataset(path, image_size=None)
    assert data.train_labels is None and data.num_classes is None
    floats = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    (tmp_path / "floats.idx").write_bytes(idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "floats.idx"), floats)
    with pytest.raises(DataError, match="floats.idx.*idx3-ubyte"):
        get_dataset(tmp_path / "floats.idx")


def test_idx_folder_pools_every_file(tmp_path):
    train, train_labels = random_digits(12, seed=1)
    test, test_labels = random_digits(8, seed=2)
    write_mnist_pair(tmp_path, "train", train, train_labels)
    write_mnist_pair(tmp_path, "t10k", test, test_labels, gz=True)
    data = get_dataset(tmp_path, image_size=None)
    assert len(data.train) + len(data.test) == 20
    assert data.name == tmp_path.name
    labels = torch.cat([data.train_labels, data.test_labels])
    assert sorted(labels.tolist()) == sorted(train_labels.tolist() + test_labels.tolist())


def test_truncated_wrong_magic_and_mismatched_idx_files(tmp_path):
    images, labels = random_digits(4)
    good = idx_bytes(images)
    cases = {
        "truncated-images-idx3-ubyte": good[:-10],
        "header-images-idx3-ubyte": good[:6],
        "magic-images-idx3-ubyte": b"\x08\x03\x00\x00" + good[4:],
        "long-images-idx3-ubyte": good + b"\x00",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=name):
            get_dataset(tmp_path / name)
    (tmp_path / "gz-images-idx3-ubyte.gz").write_bytes(gzip.compress(good)[:-30])
    with pytest.raises(DataError, match="gz-images-idx3-ubyte.gz"):
        get_dataset(tmp_path / "gz-images-idx3-ubyte.gz")
    # a header that promises far more data than the file holds is refused without reading it
    liar = bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 10**4, 10**4) + b"\x00" * 100
    (tmp_path / "liar-images-idx3-ubyte").write_bytes(liar)
    with pytest.raises(DataError, match="liar-images-idx3-ubyte"):
        get_dataset(tmp_path / "liar-images-idx3-ubyte")
    # labels beside the images must agree with them
    folder = tmp_path / "mismatch"
    folder.mkdir()
    path = write_mnist_pair(folder, "train", images, labels[:3])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: 3 labels for 4 images"):
        get_dataset(path)


# ---------------------------------------------------------------- CIFAR
def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n).tolist()


def write_batch(path, data, labels, protocol: int, byte_keys: bool = False):
    key = (lambda k: k.encode()) if byte_keys else (lambda k: k)
    batch = {key("batch_label"): key("training batch 1 of 5"), key("labels"): labels, key("data"): data,
             key("filenames"): [key(f"img_{i}.png") for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batch_round_trip(tmp_path, protocol):
    data, labels = cifar_batch(6, seed=protocol)
    path = write_batch(tmp_path / "data_batch_1", data, labels, protocol, byte_keys=protocol == 2)
    images, got_labels = read_cifar_batch(path)
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8
    assert got_labels.tolist() == labels
    # row layout: 1024 red values, then green, then blue, each row-major 32x32
    assert images[2, 1, 5, 7] == data[2, 1024 + 5 * 32 + 7]
    assert images[4, 2, 31, 0] == data[4, 2048 + 31 * 32]


def test_cifar_folder_in_rgb_and_grey(tmp_path):
    first, first_labels = cifar_batch(7, seed=1)
    test, test_labels = cifar_batch(5, seed=2)
    write_batch(tmp_path / "data_batch_1", first, first_labels, 2, byte_keys=True)
    write_batch(tmp_path / "test_batch", test, test_labels, 4)
    meta = {b"label_names": [n.encode() for n in "abcdefghij"], b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    rgb = get_dataset(tmp_path, image_size=None, grayscale=False)
    assert rgb.shape == (3, 32, 32) and len(rgb.train) + len(rgb.test) == 12 and len(rgb.test) == 1
    assert rgb.num_classes == 10 and rgb.class_names == tuple("abcdefghij")
    pixels = np.concatenate([first, test]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = first_labels + test_labels
    expected = sorted((label, p.tobytes()) for label, p in zip(labels, pixels, strict=True))
    assert contents(rgb) == expected
    grey = get_dataset(tmp_path, image_size=16, grayscale=True)
    assert grey.shape == (1, 16, 16) and grey.train.min() >= -1 and grey.train.max() <= 1
    # one batch given as a file works too
    assert len(get_dataset(tmp_path / "test_batch", image_size=None).test) == 1


class Exploit:
    """Unpickling this would call os.mkdir on the path: a stand-in for os.system."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


class SystemCall:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class OtherCodec:
    def __reduce__(self):
        return (codecs.encode, (b"abc" * 1000, "zlib_codec"))


def test_malicious_pickles_are_refused(tmp_path):
    target = tmp_path / "pwned"
    evil = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "payload": Exploit(str(target))}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataError, match="data_batch_1.*mkdir.*not allowed"):
        get_dataset(tmp_path)
    assert not target.exists()
    path.write_bytes(pickle.dumps({"data": SystemCall()}))
    with pytest.raises(DataError, match="system.*not allowed"):
        get_dataset(path)
    # a numpy pickle may not smuggle a global through _codecs.encode with another codec
    path.write_bytes(pickle.dumps({"data": OtherCodec()}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1.*only allowed for latin-1"):
        get_dataset(path)


def test_malformed_cifar_batches(tmp_path):
    path = tmp_path / "data_batch_1"
    for content, message in [
        (pickle.dumps([1, 2, 3], protocol=2), "must be a dict"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2), "3072"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, protocol=2), "uint8"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "labels"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, protocol=2), "labels"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=2)[:-20], "pickle"),
    ]:
        path.write_bytes(content)
        with pytest.raises(DataError, match=message):
            read_cifar_batch(path)
