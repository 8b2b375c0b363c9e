"""Image data: decoding a folder of pictures with Pillow, fitting image arrays to a size
and channel count, and the [-1, 1] <-> uint8 conversions.

Pixel convention: a uint8 value v maps to v / 127.5 - 1, so 0 -> -1 and 255 -> 1; tensors
are float32 (N, C, H, W) with C = 1 (grayscale) or 3 (RGB).

Folder decoding, per file: JPEGs are drafted (decoded at a reduced DCT scale) near the
target size; the picture is centre-cropped to a square and resized with bicubic filtering
(Pillow reduces by whole factors first); palette, 1-bit, 16-bit, CMYK and alpha modes are
normalised, with transparent pixels composited over white; then converted to L or RGB
(ITU-R 601 luma). A file that fails to decode, including Pillow's decompression-bomb error
and non-JPEG pictures above Image.MAX_IMAGE_PIXELS, is skipped and counted.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.data.formats import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")
ALPHA_BACKGROUND = (255, 255, 255)
MAX_IMAGE_SIZE = 512


# ---------------------------------------------------------------- value conversions
def unit_to_signed(x: np.ndarray) -> torch.Tensor:
    """[0, 1] float array (N, C, H, W) -> float32 tensor in [-1, 1]: 2 x - 1."""
    return torch.from_numpy(np.ascontiguousarray(x * 2.0 - 1.0, dtype=np.float32))


def to_uint8_images(x) -> np.ndarray:
    """(N, C, H, W) values in [-1, 1] (torch or numpy) -> (N, H, W, C) uint8 numpy:
    round((x + 1) * 127.5), clipped to 0..255; NaN becomes 128 (mid grey)."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 4:
        raise DataError(f"images: expected shape (N, C, H, W), got {array.shape}")
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = np.clip(np.rint((array + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1))


def set_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, C, H, W) -> (N, channels, H, W): luma for RGB -> 1, repetition for 1 -> 3."""
    if x.shape[1] == channels:
        return x
    if channels == 1 and x.shape[1] == 3:
        weights = np.asarray(LUMA_WEIGHTS, dtype=x.dtype).reshape(1, 3, 1, 1)
        return (x * weights).sum(axis=1, keepdims=True)
    if channels == 3 and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    raise DataError(f"images: cannot convert {x.shape[1]} channels to {channels}")


def fit_to_size(x: np.ndarray, size: int, pad_small: bool = False) -> np.ndarray:
    """(N, C, h, w) float in [0, 1] -> (N, C, size, size).

    With pad_small (digit-style images on a black background), a target larger by at most a
    quarter of the side is reached by centring on zeros (MNIST 28 -> 32: 2 pixels each side,
    as LeNet did), so strokes stay exactly as drawn. Otherwise: bicubic resampling with
    antialiasing (torch.nn.functional.interpolate), clipped back to [0, 1].
    """
    height, width = x.shape[2:]
    if (height, width) == (size, size):
        return x
    grow = size - height
    if pad_small and height == width and 0 < grow <= height // 4:
        before = grow // 2
        padded = np.zeros(x.shape[:2] + (size, size), dtype=x.dtype)
        padded[:, :, before:before + height, before:before + width] = x
        return padded
    resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                            size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0).numpy()


# ---------------------------------------------------------------- folders of pictures
def find_image_files(folder) -> list[Path]:
    """Files under `folder` (recursively) whose names end in an image extension, sorted.

    Symlinked folders are followed, but each real folder is visited once (so a link back to
    a parent cannot loop), and a file reachable by two paths is listed once.
    """
    root = Path(folder)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    found: list[Path] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            identity = os.stat(directory)
            key = (identity.st_dev, identity.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            with os.scandir(directory) as entries:
                entries = sorted(entries, key=lambda e: e.name)
        except OSError as error:
            log.warning("cannot list %s: %s", directory, error)
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_dir():
                    pending.append(path)
                    continue
                if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                stat = os.stat(path) if entry.is_file() else None
            except OSError:
                stat = None
            if stat is not None:
                key = (stat.st_dev, stat.st_ino)
                if key in seen_files:
                    continue
                seen_files.add(key)
            found.append(path)  # broken links stay in: they count as unreadable
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class ImageTooLarge(Exception):
    """A non-JPEG picture above Image.MAX_IMAGE_PIXELS: decoding it whole could exhaust memory."""


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, RGB, LA or RGBA (palette, 1-bit, 16/32-bit, CMYK, ...)."""
    mode = image.mode
    if mode in ("L", "RGB", "LA", "RGBA"):
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I"):
        # 16-bit (and 32-bit integer) grey: scale 0..65535 to 0..255 with rounding.
        wide = np.asarray(image).astype(np.int64)
        return Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8), mode="L")
    if mode == "F":
        return Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode not in ("LA", "RGBA"):
        return image
    background = Image.new("RGBA", image.size, ALPHA_BACKGROUND + (255,))
    background.alpha_composite(image.convert("RGBA"))
    return background.convert("RGB")


def decode_image(path, size: int, grayscale: bool) -> np.ndarray:
    """One picture as uint8 (size, size, C), C = 1 or 3: centre square crop, bicubic resize."""
    target_mode = "L" if grayscale else "RGB"
    if not stat.S_ISREG(os.stat(path).st_mode):
        # a named pipe or a device called *.png: opening it could block forever
        raise ValueError(f"{path}: not a regular file")
    with Image.open(path) as opened:
        image = opened
        if image.format == "JPEG":
            image.draft(target_mode, (size, size))  # decode at 1/2, 1/4 or 1/8 scale when possible
        elif Image.MAX_IMAGE_PIXELS and image.width * image.height > Image.MAX_IMAGE_PIXELS:
            raise ImageTooLarge(f"{image.width}x{image.height} pixels")
        image = _normalise_mode(image)
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        if width != height:  # crop first, so the filter never reaches outside the square
            image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    image = _flatten_alpha(image).convert(target_mode)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, -1)


@dataclass
class FolderImages:
    """Decoded pictures: images uint8 (N, C, H, W); labels from the first sub-folder level
    (when every picture sits in one of at least two sub-folders) with their class_names;
    skipped: files that could not be decoded; tried: candidate files."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    skipped: int
    tried: int


def load_image_folder(folder, size: int, grayscale: bool) -> FolderImages:
    """Decode every PNG/JPEG/BMP/WebP under `folder`. Raises DataError when none is usable."""
    folder = Path(folder)
    files = find_image_files(folder)
    channels = 1 if grayscale else 3
    images = np.empty((len(files), size, size, channels), dtype=np.uint8)
    kept: list[Path] = []
    skipped = 0
    for path in files:
        try:
            images[len(kept)] = decode_image(path, size, grayscale)
        except Exception as error:  # Pillow raises many types on bad input; each is "unreadable"
            log.info("skipping %s: %s: %s", path, type(error).__name__, error)
            skipped += 1
            continue
        kept.append(path)
    if not kept:
        raise DataError(
            f"{folder}: no usable image in this folder (tried {len(files)} files with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}; {skipped} could not be read)"
        )
    images = images[: len(kept)].transpose(0, 3, 1, 2)
    labels, class_names = _subfolder_labels(folder, kept)
    return FolderImages(np.ascontiguousarray(images), labels, class_names, skipped, len(files))


def _subfolder_labels(folder: Path, files: list[Path]) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """ImageFolder convention: class = first sub-folder below `folder`."""
    parts = [p.relative_to(folder).parts for p in files]
    if any(len(p) < 2 for p in parts):
        return None, None
    class_names = tuple(sorted({p[0] for p in parts}))
    if len(class_names) < 2:
        return None, None
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[p[0]] for p in parts], dtype=np.int64), class_names
