"""Pictures the CLI writes with Pillow: an image grid, a 2-D scatter plot."""

from __future__ import annotations

import math

import numpy as np


def image_grid(images: np.ndarray, min_tile: int = 56, padding: int = 2):
    """(N, H, W, C) uint8 -> a PIL image: a near-square grid, tiles scaled up by an integer
    factor (nearest) to at least `min_tile` pixels, `padding` white pixels between tiles."""
    from PIL import Image

    count, height, width, channels = images.shape
    scale = max(1, math.ceil(min_tile / max(height, width)))
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tile_h, tile_w = height * scale, width * scale
    mode = "L" if channels == 1 else "RGB"
    canvas = Image.new(mode, (columns * (tile_w + padding) + padding,
                              rows * (tile_h + padding) + padding), color=255 if mode == "L" else (255, 255, 255))
    for index in range(count):
        array = images[index, :, :, 0] if channels == 1 else images[index]
        tile = Image.fromarray(np.ascontiguousarray(array), mode=mode)
        tile = tile.resize((tile_w, tile_h), Image.NEAREST)
        row, column = divmod(index, columns)
        canvas.paste(tile, (padding + column * (tile_w + padding), padding + row * (tile_h + padding)))
    return canvas


def scatter_plot(points: np.ndarray, size: int = 640, radius: float = 1.6):
    """(N, 2) points -> a PIL scatter plot on a square canvas with the axes through 0.

    The view is the square around the points' 0.5-99.5 percentile box plus a margin, so a
    few stray samples do not shrink the picture."""
    from PIL import Image, ImageDraw

    points = np.asarray(points, dtype=np.float64)
    finite = points[np.isfinite(points).all(axis=1)]
    if finite.shape[0] == 0:
        finite = np.zeros((1, 2))
    low, high = np.percentile(finite, 0.5, axis=0), np.percentile(finite, 99.5, axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2 * 1.15, 1e-3)

    def to_pixels(xy):
        unit = (xy - centre + half) / (2 * half)
        return unit[..., 0] * (size - 1), (1 - unit[..., 1]) * (size - 1)

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    zero_x, zero_y = to_pixels(np.zeros(2))
    draw.line([(0, zero_y), (size, zero_y)], fill=(200, 200, 200))
    draw.line([(zero_x, 0), (zero_x, size)], fill=(200, 200, 200))
    xs, ys = to_pixels(finite)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(31, 119, 180))
    return canvas
