"""The forward process q(x_t | x_0): picked data examples (or, for 2-D data, the whole cloud)
noised to the timestep on the slider, with fixed noise so the slider moves smoothly.
x_t = core GaussianDiffusion.q_sample(x0, t, noise)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.widgets.images import for_image_item, tile_images
from app.widgets.plots import color
from core.build import diffusion_from_config as build_diffusion
from core.data import to_uint8_images

MAX_POINTS = 2000
NOISE_EXTENT = 3.5  # N(0, I) points rarely leave [-3.5, 3.5]


class ForwardPanel(QWidget):
    """`forwardSlider` over t and `forwardView` showing q(x_t | x_0) for picked examples."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.setObjectName("forwardPanel")
        self.session = session
        self.diffusion = None
        self.x0: torch.Tensor | None = None
        self.noise: torch.Tensor | None = None
        self.kind = "vector"
        self._pick_seed = 0

        self.forwardView = pg.PlotWidget()
        self.forwardView.setObjectName("forwardView")
        self.forwardView.setToolTip("q(xₜ | x₀): xₜ = √ᾱₜ x₀ + √(1 − ᾱₜ) ε with one fixed "
                                    "noise draw ε ~ N(0, I) per example")
        self.plot = self.forwardView.getPlotItem()
        self.plot.setAspectLocked(True)
        self.plot.hideButtons()
        self.data_points = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(120, 120, 120, 40))
        self.points = pg.ScatterPlotItem(size=3, pen=None, brush=pg.mkBrush(color(0)))
        self.image = pg.ImageItem()
        for item in (self.image, self.data_points, self.points):
            self.plot.addItem(item)
        self.forwardSlider = QSlider(Qt.Orientation.Horizontal)
        self.forwardSlider.setObjectName("forwardSlider")
        self.forwardSlider.setRange(0, 0)
        self.forwardSlider.setToolTip("The timestep t the examples are noised to (0 ≤ t < T)")
        self.tLabel = QLabel("t = 0")
        self.tLabel.setObjectName("forwardLabel")
        self.tLabel.setMinimumWidth(260)
        self.countSpin = QSpinBox()
        self.countSpin.setObjectName("forwardCountSpin")
        self.countSpin.setRange(1, 64)
        self.countSpin.setValue(16)
        self.countSpin.setPrefix("examples: ")
        self.countSpin.setToolTip("How many image examples to show (2-D data show up to "
                                  f"{MAX_POINTS:,} points)")
        self.pickButton = QPushButton("Pick other examples")
        self.pickButton.setObjectName("forwardPickButton")
        self.pickButton.setToolTip("Pick other examples of the data set, with new noise")
        self.note = QLabel("Load a data set to see it diffuse.")
        self.note.setObjectName("forwardNote")
        self.note.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("t"))
        bar.addWidget(self.forwardSlider, 1)
        bar.addWidget(self.tLabel)
        bar.addWidget(self.countSpin)
        bar.addWidget(self.pickButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.forwardView, 1)
        layout.addLayout(bar)
        layout.addWidget(self.note)

        self.forwardSlider.valueChanged.connect(self.show_t)
        self.pickButton.clicked.connect(self.pick_examples)
        self.countSpin.valueChanged.connect(lambda _v: self._pick(self._pick_seed))
        session.dataset_changed.connect(self._on_data_or_schedule)
        session.config_changed.connect(self._on_config)

    def _on_config(self, cfg) -> None:
        kind = self.session.dataset.kind if self.session.dataset is not None else "vector"
        key = (cfg.diffusion.schedule, cfg.diffusion.timesteps)
        if self.diffusion is None or getattr(self, "_diffusion_key", None) != key:
            self.diffusion = build_diffusion(cfg, kind)
            self._diffusion_key = key
            T = self.diffusion.num_timesteps
            value = min(self.forwardSlider.value(), T - 1)
            self.forwardSlider.blockSignals(True)
            self.forwardSlider.setRange(0, T - 1)
            self.forwardSlider.setValue(value)
            self.forwardSlider.blockSignals(False)
            self.show_t(self.forwardSlider.value())

    def _on_data_or_schedule(self, *_args) -> None:
        dataset = self.session.dataset
        if dataset is None:
            self.x0 = None
            self.note.setText("Load a data set to see it diffuse.")
            self.points.clear()
            self.data_points.clear()
            self.image.clear()
            return
        self.kind = dataset.kind
        self.diffusion = None
        self.x0 = None  # the old examples belong to the old data set
        self._on_config(self.session.config)
        self._pick(self._pick_seed)

    def pick_examples(self) -> None:
        self._pick_seed += 1
        self._pick(self._pick_seed)

    def _pick(self, seed: int) -> None:
        dataset = self.session.dataset
        if dataset is None:
            return
        generator = torch.Generator().manual_seed(seed)
        count = len(dataset.train)
        vectors = dataset.kind == "vector"
        wanted = min(count, MAX_POINTS if vectors else self.countSpin.value())
        index = torch.randperm(count, generator=generator)[:wanted]
        self.x0 = dataset.train[index].detach().cpu().float()
        self.noise = torch.randn(self.x0.shape, generator=generator)
        images = not vectors
        self.image.setVisible(images)
        self.points.setVisible(not images)
        self.data_points.setVisible(not images)
        self.countSpin.setEnabled(images)
        self.plot.invertY(images)
        for axis in ("left", "bottom"):
            self.plot.showAxis(axis, not images)
        if vectors:
            self.data_points.setData(pos=self.x0.numpy()[:, :2])
            self.note.setText(f"{wanted:,} points of the data set (grey) and the same points "
                              "noised by q(xₜ | x₀) (blue), one fixed noise draw.")
        else:
            self.note.setText(f"{wanted} examples noised by q(xₜ | x₀) with one fixed noise "
                              "draw; drag the slider to diffuse them.")
        self.show_t(self.forwardSlider.value())
        if vectors:
            # one view for every t: the data and the N(0, I) cloud the data diffuses into
            data = self.x0.numpy()[:, :2].astype(np.float64)
            lo = np.minimum(data.min(axis=0), -NOISE_EXTENT)
            hi = np.maximum(data.max(axis=0), NOISE_EXTENT)
            self.plot.setRange(xRange=(float(lo[0]), float(hi[0])),
                               yRange=(float(lo[1]), float(hi[1])), padding=0.03)
        else:
            self.plot.autoRange(padding=0.02)

    def show_t(self, t: int) -> None:
        if self.diffusion is None:
            return
        abar = self.diffusion.schedule.alphas_cumprod[t]
        self.tLabel.setText(f"t = {t} · ᾱₜ = {abar:.4f} · SNR = {self.diffusion.schedule.snr[t]:.3g}")
        if self.x0 is None:
            return
        with torch.no_grad():
            timesteps = torch.full((self.x0.shape[0],), int(t), dtype=torch.long)
            x_t = self.diffusion.q_sample(self.x0, timesteps, self.noise)
        if self.kind == "vector":
            self.points.setData(pos=x_t.numpy()[:, :2])
        else:
            grid = tile_images(to_uint8_images(x_t.clamp(-1, 1)))
            self.image.setImage(for_image_item(grid), levels=(0, 255), autoLevels=False)
