"""pyqtgraph set-up shared by the panels: one look, legends, export to PNG and CSV."""

from __future__ import annotations

import csv
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

pg.setConfigOptions(imageAxisOrder="row-major", background="w", foreground="#333333",
                    antialias=False)

# Okabe-Ito-like palette, readable on white and for colour-blind viewers
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F",
           "#000000", "#F0E442"]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def pen(index_or_color, width: float = 1.5, style=Qt.PenStyle.SolidLine, alpha: int = 255):
    c = pg.mkColor(color(index_or_color) if isinstance(index_or_color, int) else index_or_color)
    c.setAlpha(alpha)
    return pg.mkPen(c, width=width, style=style)


class DecadeAxis(pg.AxisItem):
    """A y axis whose log mode labels the decades only (10⁻⁴, 10⁻³, …) when two or more are
    in view: the minor ticks between them stay unlabelled marks instead of a wall of
    numbers. With less than two decades in view it labels 1, 2 and 5 of each decade."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph override)
        strings = super().logTickStrings(values, scale, spacing)
        if spacing is not None:
            return strings
        # the minor level: it holds the decades too (those strictly inside the range)
        decades = sum(_mantissa(value) == 1 for value in values)
        labelled = (1,) if decades >= 2 else (1, 2, 5)
        return [text if _mantissa(value) in labelled else ""
                for value, text in zip(values, strings, strict=True)]


def _mantissa(log_value: float) -> int:
    """The leading digit 1..9 of 10**log_value (0 when it is no whole digit)."""
    mantissa = 10 ** (log_value - math.floor(log_value + 1e-9))
    return round(mantissa) if abs(mantissa - round(mantissa)) < 1e-6 else 0


def make_plot(object_name: str, title: str = "", x_label: str = "", y_label: str = "",
              log_y: bool = False, legend: bool = True, parent=None) -> pg.PlotWidget:
    """A PlotWidget with grid, axis labels and (optionally) a legend in the top right."""
    widget = pg.PlotWidget(parent=parent, axisItems={"left": DecadeAxis("left")})
    widget.setObjectName(object_name)
    item = widget.getPlotItem()
    if title:
        item.setTitle(title, size="10pt")
    if x_label:
        item.setLabel("bottom", x_label)
    if y_label:
        item.setLabel("left", y_label)
    item.showGrid(x=True, y=True, alpha=0.2)
    for axis in ("left", "bottom"):
        # plain numbers: an SI prefix reads as "variance (x0.001)" on a log axis
        item.getAxis(axis).enableAutoSIPrefix(False)
    item.setLogMode(y=log_y)
    if legend:
        legend_item = item.addLegend(offset=(-8, 8), labelTextSize="8pt", verSpacing=-6)
        legend_item.setBrush(pg.mkBrush(255, 255, 255, 200))
        legend_item.setPen(pg.mkPen(200, 200, 200))
    widget.setMinimumSize(200, 150)
    return widget


def link_x(master: pg.PlotWidget, *followers: pg.PlotWidget) -> None:
    """Share the x axis of `followers` with `master`, which keeps auto-ranging x.

    A follower that auto-ranges x pushes its own x range to the master when its y range
    updates, and pyqtgraph then switches the master's x auto-range off (the master stuck at
    -0.5..0.5), so the followers' x auto-range is switched off instead."""
    for follower in followers:
        follower.setXLink(master)
        follower.getPlotItem().getViewBox().enableAutoRange(x=False)
    master.getPlotItem().getViewBox().enableAutoRange(x=True)


def show_in_legend(plot: pg.PlotWidget, item, visible: bool) -> None:
    """Add or remove `item`'s legend entry, so the legend lists only curves that apply."""
    legend = plot.getPlotItem().legend
    if legend is None:
        return
    listed = any(sample.item is item for sample, _label in legend.items)
    if visible and not listed:
        legend.addItem(item, item.name())
    elif not visible and listed:
        legend.removeItem(item)


def rename_curve(plot: pg.PlotWidget, item, name: str) -> None:
    """Give `item` a new name, in its legend entry too (and so in CSV exports)."""
    item.opts["name"] = name
    legend = plot.getPlotItem().legend
    label = legend.getLabel(item) if legend is not None else None
    if label is not None:
        label.setText(name)


def set_bounds_ignored(plot: pg.PlotWidget, item, ignored: bool) -> None:
    """Leave `item` out of (or take it back into) the plot's auto-range, e.g. raw curves
    whose spikes would stretch the axis while their smoothed version is drawn."""
    view = plot.getPlotItem().getViewBox()
    listed = item in view.addedItems
    if ignored and listed:
        view.addedItems.remove(item)
    elif not ignored and not listed:
        view.addedItems.append(item)
    else:
        return
    view.updateAutoRange()


def finite_or_nan(values) -> np.ndarray:
    """float64 copy with +-inf replaced by NaN (pyqtgraph leaves NaN gaps)."""
    values = np.array(values, dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return values


def curves_of(plot: pg.PlotWidget) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, x, y, unit) of every curve in `plot`, the data as set (not the displayed
    subset); unit: the curve's `unit` attribute (e.g. "nats_per_dim", set by the panel that
    drew it), else ""."""
    result = []
    for index, item in enumerate(plot.getPlotItem().listDataItems()):
        # scatter items (e.g. a points view) hold no curve
        x, y = getattr(item, "xData", None), getattr(item, "yData", None)
        if x is None or y is None:
            continue
        name = item.name() or f"curve {index}"
        result.append((str(name), np.asarray(x), np.asarray(y), getattr(item, "unit", "")))
    return result


def export_png(widget, path: str) -> None:
    """Save what the user sees of `widget` as a PNG (raises OSError if it cannot be written)."""
    if not widget.grab().save(path, "PNG"):
        raise OSError(f"cannot write PNG {path!r}")


def export_csv(plots: list[pg.PlotWidget], path: str) -> int:
    """Write every curve of every plot as rows (plot, curve, x, y, y_unit); y_unit names
    the unit of likelihood values (core.options.NllUnit.key, e.g. "nats_per_dim") and is
    empty for other quantities. Returns the row count."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["plot", "curve", "x", "y", "y_unit"])
        for plot in plots:
            plot_name = plot.objectName() or "plot"
            for name, xs, ys, unit in curves_of(plot):
                for x, y in zip(xs, ys, strict=False):
                    writer.writerow([plot_name, name, repr(float(x)), repr(float(y)), unit])
                    rows += 1
    return rows
