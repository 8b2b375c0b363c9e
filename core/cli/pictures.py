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


# Picture files the CLI writes: modes L and RGB save without conversion in each of these.
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
                   ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


def picture_formats() -> dict[str, str]:
    """Extension -> Pillow format, for the PICTURE_FORMATS this Pillow can write."""
    from PIL import Image

    Image.init()
    return {ext: fmt for ext, fmt in PICTURE_FORMATS.items() if fmt in Image.SAVE}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2 or 5 times a power of ten) in [low, high]."""
    span = max(high - low, 1e-12)
    raw = span / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]


def tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def font_of(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(8, size))
    except TypeError:                  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def scatter_plot(points: np.ndarray, size: int = 640, radius: float = 1.6, title: str = ""):
    """(N, 2) points -> a PIL scatter plot on a square canvas of `size` pixels: a framed
    square plot area with tick marks and labels on both axes, the lines x = 0 and y = 0
    in grey where they are in view, and `title` above.

    The view is the square around the points' 0.5-99.5 percentile box plus a margin, so a
    few stray samples do not shrink the picture; points outside it are not drawn."""
    from PIL import Image, ImageDraw

    points = np.asarray(points, dtype=np.float64)
    finite = points[np.isfinite(points).all(axis=1)]
    if finite.shape[0] == 0:
        finite = np.zeros((1, 2))
    low, high = np.percentile(finite, 0.5, axis=0), np.percentile(finite, 99.5, axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2 * 1.15, 1e-3)
    font = font_of(round(size * 0.022))
    left, top = round(size * 0.11), round(size * 0.07)
    side = size - left - round(size * 0.03)              # the plot area is side x side
    side = min(side, size - top - round(size * 0.07))

    def to_pixels(xy):
        unit = (xy - centre + half) / (2 * half)
        return left + unit[..., 0] * side, top + (1 - unit[..., 1]) * side

    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    right, bottom = left + side, top + side
    zero_x, zero_y = to_pixels(np.zeros(2))
    if top <= zero_y <= bottom:
        draw.line([(left, zero_y), (right, zero_y)], fill=(200, 200, 200))
    if left <= zero_x <= right:
        draw.line([(zero_x, top), (zero_x, bottom)], fill=(200, 200, 200))
    for axis in (0, 1):
        ticks = nice_ticks(centre[axis] - half, centre[axis] + half)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 2 * half
        for value in ticks:
            label = tick_label(value, step)
            point = np.array(centre, dtype=np.float64)
            point[axis] = value
            x, y = to_pixels(point)
            box = draw.textbbox((0, 0), label, font=font)
            width, height = box[2] - box[0], box[3] - box[1]
            if axis == 0:
                draw.line([(x, bottom), (x, bottom + 4)], fill=(0, 0, 0))
                draw.text((x - width / 2 - box[0], bottom + 6 - box[1]), label, fill=(0, 0, 0), font=font)
            else:
                draw.line([(left - 4, y), (left, y)], fill=(0, 0, 0))
                draw.text((left - 6 - width - box[0], y - height / 2 - box[1]), label, fill=(0, 0, 0), font=font)
    xs, ys = to_pixels(finite)
    inside = (xs >= left) & (xs <= right) & (ys >= top) & (ys <= bottom)
    for x, y in zip(xs[inside].tolist(), ys[inside].tolist(), strict=True):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(31, 119, 180))
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if title:
        box = draw.textbbox((0, 0), title, font=font)
        draw.text(((size - (box[2] - box[0])) / 2 - box[0], (top - (box[3] - box[1])) / 2 - box[1]),
                  title, fill=(0, 0, 0), font=font)
    return canvas
