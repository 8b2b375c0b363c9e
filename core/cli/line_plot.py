"""A line plot drawn with Pillow alone (the CLI has no plotting library): curves of y against
x on log or linear axes, solid or dashed, with decade ticks on log axes, a legend, an
optional grey reference line, and a title."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.cli.pictures import font_of, nice_ticks, tick_label

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


@dataclass
class Series:
    label: str
    x: np.ndarray
    y: np.ndarray
    color: tuple[int, int, int]
    dashed: bool = False


def _ticks(low: float, high: float, log: bool) -> list[tuple[float, str]]:
    """(value on the axis's scale, label) of the ticks between low and high (log: log10)."""
    if log:
        decades = range(math.floor(low), math.ceil(high) + 1)
        # 1, 2 and 5 times each decade when the axis spans little more than a decade
        mantissas = (1, 2, 5) if high - low < 2.5 else (1,)
        ticks = [math.log10(m) + d for d in decades for m in mantissas]
        return [(v, f"{10.0 ** v:g}" if -2 <= v <= 4 else f"1e{round(v)}")
                for v in ticks if low - 1e-9 <= v <= high + 1e-9]
    values = nice_ticks(low, high)
    step = values[1] - values[0] if len(values) > 1 else max(high - low, 1e-12)
    return [(v, tick_label(v, step)) for v in values]


def line_plot(series: list[Series], *, title: str = "", x_label: str = "", y_label: str = "",
              log_x: bool = True, log_y: bool = True, reference: float | None = None,
              reference_label: str = "", width: int = 900, height: int = 600):
    """A PIL image of the curves. Points that are not finite (or not positive on a log axis)
    are skipped; a curve breaks there."""
    from PIL import Image, ImageDraw

    def scale(values, log):
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, np.log10(values), np.nan) if log else values

    xs = [scale(s.x, log_x) for s in series]
    ys = [scale(s.y, log_y) for s in series]
    ref = None if reference is None else float(scale([reference], log_y)[0])
    every_x = np.concatenate([x[np.isfinite(x)] for x in xs] or [np.zeros(1)])
    every_y = np.concatenate([y[np.isfinite(y)] for y in ys] or [np.zeros(1)])
    if ref is not None and math.isfinite(ref):
        every_y = np.append(every_y, ref)
    if every_x.size == 0:
        every_x = np.zeros(1)
    if every_y.size == 0:
        every_y = np.zeros(1)
    x_low, x_high = float(every_x.min()), float(every_x.max())
    y_low, y_high = float(every_y.min()), float(every_y.max())
    x_pad, y_pad = max((x_high - x_low) * 0.05, 0.05), max((y_high - y_low) * 0.08, 0.05)
    x_low, x_high, y_low, y_high = x_low - x_pad, x_high + x_pad, y_low - y_pad, y_high + y_pad

    font = font_of(round(height * 0.026))
    left, top, right, bottom = 80, 45, width - 220, height - 60
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    def px(x, y):
        return (left + (x - x_low) / (x_high - x_low) * (right - left),
                bottom - (y - y_low) / (y_high - y_low) * (bottom - top))

    def text(position, label, anchor="mm"):
        draw.text(position, label, fill=(0, 0, 0), font=font, anchor=anchor)

    for value, label in _ticks(x_low, x_high, log_x):
        x, _ = px(value, y_low)
        draw.line([(x, top), (x, bottom)], fill=(235, 235, 235))
        draw.line([(x, bottom), (x, bottom + 5)], fill=(0, 0, 0))
        text((x, bottom + 16), label)
    for value, label in _ticks(y_low, y_high, log_y):
        _, y = px(x_low, value)
        draw.line([(left, y), (right, y)], fill=(235, 235, 235))
        draw.line([(left - 5, y), (left, y)], fill=(0, 0, 0))
        text((left - 8, y), label, anchor="rm")
    if ref is not None and math.isfinite(ref):
        _, y = px(x_low, ref)
        draw.line([(left, y), (right, y)], fill=(150, 150, 150), width=2)
    for s, x, y in zip(series, xs, ys, strict=True):
        points = [px(a, b) if math.isfinite(a) and math.isfinite(b) else None
                  for a, b in zip(x, y, strict=True)]
        for start, end in zip(points, points[1:], strict=False):
            if start is not None and end is not None:
                _segment(draw, start, end, s.color, s.dashed)
        for point in points:
            if point is not None:
                draw.ellipse([point[0] - 3, point[1] - 3, point[0] + 3, point[1] + 3], fill=s.color)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    text(((left + right) / 2, height - 18), x_label)
    text(((left + right) / 2, 20), title)
    if y_label:
        label = Image.new("RGB", (bottom - top, 24), (255, 255, 255))
        ImageDraw.Draw(label).text(((bottom - top) / 2, 12), y_label, fill=(0, 0, 0), font=font,
                                   anchor="mm")
        canvas.paste(label.rotate(90, expand=True), (8, top))
    entries = [(s.label, s.color, s.dashed) for s in series]
    if ref is not None and reference_label:
        entries.append((reference_label, (150, 150, 150), False))
    for row, (label, color, dashed) in enumerate(entries):
        y = top + 12 + row * 22
        _segment(draw, (right + 15, y), (right + 45, y), color, dashed)
        draw.text((right + 52, y), label, fill=(0, 0, 0), font=font, anchor="lm")
    return canvas


def _segment(draw, start, end, color, dashed: bool) -> None:
    if not dashed:
        draw.line([start, end], fill=color, width=2)
        return
    length = math.dist(start, end)
    pieces = max(1, int(length // 8))
    for k in range(0, pieces, 2):
        a, b = k / pieces, min(1.0, (k + 1) / pieces)
        draw.line([(start[0] + a * (end[0] - start[0]), start[1] + a * (end[1] - start[1])),
                   (start[0] + b * (end[0] - start[0]), start[1] + b * (end[1] - start[1]))],
                  fill=color, width=2)
