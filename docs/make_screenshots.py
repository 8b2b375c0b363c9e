"""Screenshots of every panel after a real training, for the README.

Two runs through the real window (offscreen, CPU), each sampled, then one PNG per tab:
docs/screenshots/{toy-2d,mnist}-{loss,schedule,entropy,vlb,trajectories,forward,model}.png,
palette-quantised to stay small. The settings (the README's captions say them):

- toy-2d: the toy-2d preset with variance "learned range" and the hybrid loss (so Σθ shows
  and the total loss differs from L_simple), 6,000 steps, probes every 100; sampled with
  DDPM, 100 steps, 1,000 points, seed 0; trails on at 75 % of the trajectory.
- mnist: the mnist-cpu preset exactly as shipped (16x16 MNIST, 2,400 steps); sampled with
  the Trajectories panel's defaults for images (DDPM, 100 steps, 36 samples, seed 0).

During the 2-D training it also saves the Entropy panel at the probes of --series steps
(docs/screenshots/toy-2d-entropy-step<N>.png): the learned Sigma_theta and the Analytic-DPM
variance approaching the exact truth.

After the 2-D run, the Score tab (score_shots): toy-2d-score.png (the field at t = 10, the
Fisher curve, the likelihood readout of 500 test points) and toy-2d-score-particles.png (the
reverse SDE and the probability-flow ODE, DDIM eta = 0, from the same x_T: 500 particles,
100 steps, at the end of the run, the field following their t, the error map off).
`--panels score` writes only these two (no tab images, no Entropy series).

And the Samplers tab (samplers_shots): toy-2d-samplers.png, the sampler lab on the trained
model and the exact eps (DDIM, DPM-Solver++ 2M, UniPC-2, Heun; NFE 1..100; uniform
spacing; 1,000 samples, seed 0), k-NN KL against NFE, with the samples of DPM-Solver++ 2M
at 10 NFE with the model. `--panels samplers` writes only that one. `--panels entropy`:
toy-2d-entropy-ode.png, the Entropy tab with the model's H(X_t) by the probability-flow ODE.

    .venv/bin/python docs/make_screenshots.py [--toy-steps 6000] [--mnist-steps 2400]
        [--series 300,1500,3000,6000] [--only toy|mnist] [--panels tabs,score,samplers,entropy]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAB_FILES = ["loss", "schedule", "entropy", "vlb", "trajectories", "forward", "model"]


def wait(ms: int) -> None:
    """Run the event loop (QTest.qWait would hold the GIL and starve the workers)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        wait(100)


def shown(path: Path) -> str:
    """path relative to the repository where it lies inside it, and its size."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{name} ({path.stat().st_size // 1024} KB)"


def save_small(image, path: Path) -> None:
    """Save a QImage as a 256-colour PNG (plots have few colours)."""
    from PIL import Image

    from app.widgets.images import qimage_to_array

    picture = Image.fromarray(qimage_to_array(image))
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


class EntropySeries:
    """Saves the Entropy panel when the probe of one of `steps` has been drawn."""

    def __init__(self, window, steps: list[int], out: Path, name: str):
        self.window, self.steps, self.out, self.name = window, set(steps), out, name
        window.session.probe_added.connect(self.on_probe)

    def on_probe(self, probe: dict) -> None:
        from PySide6.QtCore import QTimer

        step = int(probe["step"])
        if step in self.steps:
            self.window.tabs.setCurrentWidget(self.window.entropy_panel)
            QTimer.singleShot(50, lambda: self.save(step))  # after the panels have redrawn

    def save(self, step: int) -> None:
        path = self.out / f"{self.name}-entropy-step{step}.png"
        save_small(self.window.entropy_panel.grab().toImage(), path)
        print(f"  {shown(path)}", flush=True)

    def close(self) -> None:
        self.window.session.probe_added.disconnect(self.on_probe)


def score_shots(window, name: str, out: Path) -> None:
    """The Score tab of the trained 2-D model (see the module docstring)."""
    panel = window.score_panel
    window.tabs.setCurrentWidget(panel)
    step = window.session.trainer.step
    wait_for(lambda: panel.source is not None and panel.source.step == step, 120,
             "the score panel's snapshot")
    panel.timeSlider.setValue(10)
    wait_for(lambda: panel.field_data is not None and panel.field_data.t == 10
             and panel.field_data.heat is not None, 120, "the score field")
    wait_for(lambda: panel.fisher_curve.yData is not None and len(panel.fisher_curve.yData),
             300, "the Fisher divergence")
    panel.likelihood.countSpin.setValue(500)
    panel.likelihood.runButton.click()
    wait_for(lambda: len(panel.likelihood.rows) == 4, 900, "the likelihood readout")
    wait(400)
    path = out / f"{name}-score.png"
    save_small(window.grab().toImage(), path)
    print(f"  {shown(path)}", flush=True)
    controls = panel.particles
    controls.modeCombo.setCurrentIndex(controls.modeCombo.findData("compare"))
    controls.countSpin.setValue(500)
    controls.stepsSpin.setValue(100)
    panel.particle_run = None
    controls.runButton.click()
    wait_for(lambda: panel.particle_run is not None, 600, "the particles")
    panel.errorCheck.setChecked(False)
    controls.slider.setValue(controls.slider.maximum())
    t = panel.timeSlider.value()
    wait_for(lambda: panel.field_data is not None and panel.field_data.t == t, 120,
             "the field at the particles' t")
    wait(400)
    path = out / f"{name}-score-particles.png"
    save_small(window.grab().toImage(), path)
    print(f"  {shown(path)}", flush=True)


def samplers_shots(window, name: str, out: Path) -> None:
    """The Samplers tab on the trained 2-D model (see the module docstring)."""
    panel = window.samplers_panel
    window.tabs.setCurrentWidget(panel)
    panel.set_samplers(["ddim", "dpmpp_2m", "unipc", "heun"])
    panel.nfeEdit.setText("1,2,3,5,8,10,15,20,30,50,100")
    panel.countSpin.setValue(1000)
    panel.seedSpin.setValue(0)
    finished = []
    panel.lab.finished.connect(finished.append)
    started = time.monotonic()
    panel.runButton.click()
    wait_for(lambda: finished, 1800, "the sampler lab")
    panel.lab.finished.disconnect(finished.append)
    print(f"{name}: sampler lab {finished[0]} in {time.monotonic() - started:.0f} s", flush=True)
    chosen = [p for p in panel.result.points
              if p.sampler == "dpmpp_2m" and p.model == "model" and p.nfe == 10]
    if chosen:
        panel.show_point(chosen[0])
    wait(400)
    path = out / f"{name}-samplers.png"
    save_small(window.grab().toImage(), path)
    print(f"  {shown(path)}", flush=True)


def entropy_ode_shot(window, name: str, out: Path) -> None:
    """The Entropy tab with the model's H(X_t) by the probability-flow ODE beside the
    exact curve (its button), as docs/screenshots/<name>-entropy-ode.png."""
    panel = window.entropy_panel
    window.tabs.setCurrentWidget(panel)
    panel.odeButton.click()
    wait_for(lambda: panel.ode_curve.yData is not None and len(panel.ode_curve.yData) > 0,
             600, "H(X_t) along the ODE")
    wait(400)
    path = out / f"{name}-entropy-ode.png"
    save_small(window.grab().toImage(), path)
    print(f"  {shown(path)}", flush=True)


def run(window, name: str, config, sample_params: dict, out: Path, frame: float,
        trails: bool, series: list[int] | None = None, preset: str | None = None,
        panels: tuple = ("tabs", "score", "samplers", "entropy")) -> None:
    window.session.set_trainer(None)
    window.experiment.set_config(config, preset=preset)
    wait_for(lambda: window.session.dataset is not None
             and window.session.dataset.name == config.train.dataset, 120, "the data set")
    wait_for(lambda: (window.session.data_curves or {}).get("T") == config.diffusion.timesteps,
             300, "the entropy curves")
    recorder = EntropySeries(window, series, out, name) if series else None
    finished = []
    window.training_finished.connect(finished.append)
    started = time.monotonic()
    window.controls.startButton.click()
    wait_for(lambda: finished, 3600, "training")
    window.training_finished.disconnect(finished.append)
    wait(200)
    if recorder is not None:
        recorder.close()
    print(f"{name}: trained {window.session.trainer.step} steps in "
          f"{time.monotonic() - started:.0f} s ({finished[0]})", flush=True)
    if "score" in panels and window.session.dataset.kind == "vector":
        score_shots(window, name, out)
    if "samplers" in panels and window.session.dataset.kind == "vector":
        samplers_shots(window, name, out)
    if "entropy" in panels and window.session.dataset.kind == "vector":
        entropy_ode_shot(window, name, out)
    if "tabs" not in panels:
        return
    panel = window.trajectory_panel
    panel.set_params(sample_params)
    sampled = []
    window.sampling_finished.connect(sampled.append)
    window.tabs.setCurrentWidget(panel)
    panel.sampleButton.click()
    wait_for(lambda: sampled, 1800, "sampling")
    window.sampling_finished.disconnect(sampled.append)
    panel.trailsCheck.setChecked(trails)
    panel.trajectorySlider.setValue(int(frame * panel.trajectorySlider.maximum()))
    forward = window.forward_panel
    forward.forwardSlider.setValue(int(0.3 * forward.forwardSlider.maximum()))
    for index, tab in enumerate(TAB_FILES):
        window.tabs.setCurrentIndex(index)
        wait(400)
        path = out / f"{name}-{tab}.png"
        save_small(window.grab().toImage(), path)
        print(f"  {shown(path)}", flush=True)


def open_window(folder: Path):
    """The app's window as a user starts it (Fusion style, threads by core count, torch
    warmed), 1280x800, with its settings in `folder`, shown."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    from app.__main__ import prewarm_torch
    from app.main_window import MainWindow
    from app.settings import make_settings
    from app.style import apply_style
    from core.device import configure_threads

    apply_style(app)
    configure_threads()
    prewarm_torch()
    window = MainWindow(make_settings(str(folder / "s.ini")), restore=False)
    window.resize(1280, 800)
    window.show()
    return window


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-steps", type=int, default=6000)
    parser.add_argument("--mnist-steps", type=int, default=None,
                        help="train steps of the mnist-cpu run (default: the preset's)")
    parser.add_argument("--series", default="300,1500,3000,6000",
                        help="2-D training steps whose probe is saved as an Entropy-panel image")
    parser.add_argument("--only", choices=("toy", "mnist"), default=None)
    parser.add_argument("--panels", default="tabs,score,samplers,entropy",
                        help="which images: tabs (one per tab, and the Entropy series), "
                             "score (the Score tab of the 2-D run), samplers (its Samplers "
                             "tab), entropy (its Entropy tab with the model's H(X_t) by the ODE)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from core.presets import load_preset

    window = open_window(Path(tempfile.mkdtemp()))

    toy = load_preset("toy-2d")
    toy.diffusion.variance_type = "learned_range"
    toy.diffusion.loss_type = "hybrid"
    toy.train.steps = args.toy_steps
    toy.train.probe_every = 100
    panels = tuple(part.strip() for part in args.panels.split(","))
    series = [int(step) for step in args.series.split(",") if step.strip()]
    if "tabs" not in panels:
        series = []
    if args.only in (None, "toy"):
        run(window, "toy-2d", toy, {"sampler": "ddpm", "steps": 100, "n": 1000, "seed": 0}, out,
            frame=0.75, trails=True, series=series, panels=panels)
    if args.only in (None, "mnist"):
        mnist = load_preset("mnist-cpu")
        if args.mnist_steps is not None:
            mnist.train.steps = args.mnist_steps
        run(window, "mnist", mnist, {"sampler": "ddpm", "steps": 100, "n": 36, "seed": 0},
            out, frame=0.6, trails=False,
            preset="mnist-cpu" if args.mnist_steps is None else None, panels=panels)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
