"""Image helpers for display and export: tile a batch into one grid, QImage <-> numpy/PIL."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtGui import QImage


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding `count` tiles."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / cols), cols


def tile_images(images: np.ndarray, cols: int | None = None, pad: int = 1,
                pad_value: int = 255) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 grid."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    rows, cols = grid_shape(n) if cols is None else (math.ceil(n / cols), cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, images.dtype)
    for index in range(n):
        r, col = divmod(index, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top: top + h, left: left + w] = images[index]
    return grid


def for_image_item(grid: np.ndarray) -> np.ndarray:
    """A grid as ImageItem wants it: (H, W) for one channel, (H, W, 3) for colour."""
    return grid[..., 0] if grid.shape[-1] == 1 else grid


def qimage_to_array(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy of a QImage."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * height)
    return data.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()
