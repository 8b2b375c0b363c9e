"""The Score panel's particle controls: N points from the prior run by a score-based sampler
(annealed Langevin, predictor-corrector, the reverse SDE, the probability-flow ODE by RK45 or
DDIM with eta = 0; their options from the registry's option specs), or the reverse SDE and
the probability-flow ODE from the same x_T ("ODE vs SDE"); Run / Cancel with progress, and
a scrub slider with Play over the recorded frames (as in the Trajectories panel)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
)

from app.widgets.player import SliderPlayer
from app.widgets.run_progress import RunProgress
from app.widgets.sampler_options import option_value, option_widget
from core.samplers import ddim, langevin, pc, reverse_sde, rk45
from core.samplers.base import ETA

# the registered samplers of the score view (their names live in their modules)
PARTICLE_SPECS = (langevin.SPEC, pc.SPEC, reverse_sde.SPEC, rk45.SPEC, ddim.SPEC)
SDE_RUN = ("reverse SDE", reverse_sde.SPEC, {})
ODE_RUN = ("probability-flow ODE (DDIM η = 0)", ddim.SPEC, {ETA.name: 0.0})
ONE, COMPARE = "one", "compare"
DEFAULT_COUNT = 500


class ParticleControls(RunProgress, QGroupBox):
    """Emits run_requested(dict(runs, n, steps, seed, exact)), cancel_requested() and
    frame_changed(index) (the slider's frame)."""

    run_requested = Signal(object)
    cancel_requested = Signal()
    frame_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__("Particles", parent)
        self.setObjectName("particleBox")
        self.modeCombo = QComboBox()
        self.modeCombo.setObjectName("particleModeCombo")
        self.modeCombo.addItem("one sampler", ONE)
        self.modeCombo.addItem("ODE vs SDE", COMPARE)
        self.modeCombo.setToolTip("One sampler, or the reverse SDE and the probability-flow ODE "
                                  "(DDIM, η = 0) from the same x_T, in two colours: the SDE "
                                  "paths jitter, the ODE paths are smooth and deterministic")
        self.samplerCombo = QComboBox()
        self.samplerCombo.setObjectName("particleSamplerCombo")
        for spec in PARTICLE_SPECS:
            self.samplerCombo.addItem(spec.label, spec.name)
            self.samplerCombo.setItemData(self.samplerCombo.count() - 1, spec.description,
                                          Qt.ItemDataRole.ToolTipRole)
        self.scoreCombo = QComboBox()
        self.scoreCombo.setObjectName("particleScoreCombo")
        self.scoreCombo.addItem("learned (EMA)", False)
        self.scoreCombo.addItem("exact (mixture)", True)
        self.scoreCombo.setToolTip("Run on the model's learned score, or on the mixture's exact "
                                   "score (Gaussian-mixture data): the sampler's own error alone")
        self._had_model = None
        self.option_specs = {o.name: o for spec in PARTICLE_SPECS for o in spec.options}
        self.option_widgets, self.option_labels = {}, {}
        for name, spec in self.option_specs.items():
            widget = option_widget(spec)
            widget.setObjectName(f"particleOption_{name}")
            self.option_widgets[name] = widget
            self.option_labels[name] = QLabel(spec.label)
        self.countSpin = QSpinBox()
        self.countSpin.setObjectName("particleCountSpin")
        self.countSpin.setRange(1, 20000)
        self.countSpin.setValue(DEFAULT_COUNT)
        self.countSpin.setToolTip("How many particles start from the prior N(0, I)")
        self.stepsSpin = QSpinBox()
        self.stepsSpin.setObjectName("particleStepsSpin")
        self.stepsSpin.setRange(1, 100)
        self.stepsSpin.setValue(100)
        self.stepsSpin.setToolTip("Noise levels (steps) of the run, at most T; Langevin and "
                                  "predictor-corrector take their K or C sub-steps at each; "
                                  "RK45 chooses its own steps")
        self.seedSpin = QSpinBox()
        self.seedSpin.setObjectName("particleSeedSpin")
        self.seedSpin.setRange(0, 2**31 - 1)
        self.seedSpin.setToolTip("Seed of x_T and of the sampler's noise")
        self.runButton = QPushButton("Run")
        self.runButton.setObjectName("particleRunButton")
        self.runButton.setToolTip("Start the particles from x_T ~ N(0, I) (in the background)")
        self.cancelButton = QPushButton("Cancel")
        self.cancelButton.setObjectName("particleCancelButton")
        self.cancelButton.setEnabled(False)
        self.cancelButton.setToolTip("Stop the run after its current step")
        self.progress = QProgressBar()
        self.progress.setObjectName("particleProgress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%p %")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("particleSlider")
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.setToolTip("The recorded frames: 0 is x_T, the last the samples")
        self.playButton = QPushButton("Play")
        self.playButton.setObjectName("particlePlayButton")
        self.playButton.setEnabled(False)
        self.playButton.setToolTip("Play the frames from x_T to the samples")
        self.frameLabel = QLabel("Press Run to release particles from the prior.")
        self.frameLabel.setObjectName("particleFrameLabel")
        self.frameLabel.setWordWrap(True)

        grid = QGridLayout(self)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        self.samplerLabel = QLabel("Sampler")
        rows = [("Mode", self.modeCombo), (self.samplerLabel, self.samplerCombo),
                *[(self.option_labels[n], self.option_widgets[n]) for n in self.option_specs],
                ("Score", self.scoreCombo), ("Particles", self.countSpin),
                ("Steps", self.stepsSpin), ("Seed", self.seedSpin)]
        for index, (label, widget) in enumerate(rows):
            row, col = divmod(index, 2)
            grid.addWidget(label if isinstance(label, QLabel) else QLabel(label), row, 2 * col)
            grid.addWidget(widget, row, 2 * col + 1)
        last = (len(rows) + 1) // 2
        buttons = QHBoxLayout()
        buttons.addWidget(self.runButton)
        buttons.addWidget(self.cancelButton)
        buttons.addWidget(self.progress, 1)
        grid.addLayout(buttons, last, 0, 1, 4)
        scrub = QHBoxLayout()
        scrub.addWidget(self.playButton)
        scrub.addWidget(self.slider, 1)
        grid.addLayout(scrub, last + 1, 0, 1, 4)
        grid.addWidget(self.frameLabel, last + 2, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)

        self._player = SliderPlayer(self.slider, self.playButton)
        self.modeCombo.currentIndexChanged.connect(self._update_options)
        self.samplerCombo.currentIndexChanged.connect(self._update_options)
        self.runButton.clicked.connect(self._request)
        self.cancelButton.clicked.connect(self._cancel)
        self.slider.valueChanged.connect(self.frame_changed)
        self._update_options()

    # -- settings --------------------------------------------------------------------------
    def set_limits(self, timesteps: int, has_model: bool, has_mixture: bool) -> None:
        """Steps up to T; the score choices that exist (learned needs a model, exact a
        mixture); prefers the learned score when there is one."""
        self.stepsSpin.setMaximum(max(1, timesteps))
        model = self.scoreCombo.model()
        for index, available in ((0, has_model), (1, has_mixture)):
            model.item(index).setEnabled(available)
        if has_model != self._had_model or not has_mixture:
            self.scoreCombo.setCurrentIndex(0 if has_model or not has_mixture else 1)
        self._had_model = has_model
        self.runButton.setEnabled(has_model or has_mixture)

    def _update_options(self, *_args) -> None:
        compare = self.modeCombo.currentData() == COMPARE
        spec = PARTICLE_SPECS[max(0, self.samplerCombo.currentIndex())]
        self.samplerCombo.setVisible(not compare)
        self.samplerLabel.setVisible(not compare)
        taken = () if compare else spec.option_names()
        for name, widget in self.option_widgets.items():
            widget.setVisible(name in taken)
            self.option_labels[name].setVisible(name in taken)
        self.samplerCombo.setToolTip("ODE vs SDE runs the reverse SDE and DDIM (η = 0)"
                                     if compare else spec.description)

    def request(self) -> dict:
        """What Run asks for (see the class docstring)."""
        if self.modeCombo.currentData() == COMPARE:
            runs = [SDE_RUN, ODE_RUN]
        else:
            spec = PARTICLE_SPECS[self.samplerCombo.currentIndex()]
            options = {name: option_value(self.option_widgets[name])
                       for name in spec.option_names()}
            runs = [(spec.label, spec, options)]
        return {"runs": runs, "n": self.countSpin.value(), "steps": self.stepsSpin.value(),
                "seed": self.seedSpin.value(), "exact": bool(self.scoreCombo.currentData())}

    def _request(self) -> None:
        self.stop_playing()
        self.run_requested.emit(self.request())

    # -- frames ----------------------------------------------------------------------------
    def set_frames(self, count: int) -> None:
        """A new run of `count` frames (0: none); shows the last one."""
        self.stop_playing()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(max(0, count - 1))
        self.slider.blockSignals(False)
        for widget in (self.slider, self.playButton):
            widget.setEnabled(count > 1)
        if count:
            self.frame_changed.emit(self.slider.value())

    def stop_playing(self) -> None:
        self._player.stop()
