"""Growable per-metric arrays for the live curves (GUI side, no math beyond storage)."""

from __future__ import annotations

import numpy as np


class MetricHistory:
    """Columns of float64 samples keyed by metric name, appended in chunks.

    `append(columns)` takes a dict of equal-length 1-D arrays (missing values are NaN) and
    grows preallocated buffers, so each append costs O(new rows). `column(name)` returns a
    read-only view of the filled part; `step` is the x axis of every curve.
    """

    def __init__(self, capacity: int = 1024):
        self._capacity = capacity
        self._columns: dict[str, np.ndarray] = {}
        self._length = 0

    def __len__(self) -> int:
        return self._length

    @property
    def names(self) -> list[str]:
        return list(self._columns)

    def clear(self) -> None:
        self._columns.clear()
        self._length = 0

    def append(self, columns: dict[str, np.ndarray]) -> int:
        """Add rows; returns how many were added."""
        if not columns:
            return 0
        count = max(len(np.atleast_1d(v)) for v in columns.values())
        if count == 0:
            return 0
        needed = self._length + count
        if needed > self._capacity:
            while self._capacity < needed:
                self._capacity *= 2
            for name, buf in self._columns.items():
                grown = np.full(self._capacity, np.nan)
                grown[: self._length] = buf[: self._length]
                self._columns[name] = grown
        for name, values in columns.items():
            buf = self._columns.get(name)
            if buf is None or len(buf) < self._capacity:
                buf = np.full(self._capacity, np.nan)
                self._columns[name] = buf
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            buf[self._length: self._length + len(values)] = values
        self._length = needed
        return count

    def column(self, name: str) -> np.ndarray:
        buf = self._columns.get(name)
        if buf is None:
            return np.full(self._length, np.nan)
        view = buf[: self._length]
        view.flags.writeable = False
        return view

    def last(self, name: str, default: float = float("nan")) -> float:
        if self._length == 0 or name not in self._columns:
            return default
        return float(self._columns[name][self._length - 1])


def rows_to_columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """A list of metric dicts -> dict of float64 arrays (None and non-numbers become NaN)."""
    names: list[str] = []
    for row in rows:
        for key in row:
            if key not in names:
                names.append(key)
    columns = {}
    for name in names:
        values = []
        for row in rows:
            value = row.get(name)
            try:
                values.append(float(value) if value is not None else np.nan)
            except (TypeError, ValueError):
                values.append(np.nan)
        columns[name] = np.asarray(values, dtype=np.float64)
    return columns
