"""How responsive the window stays while it trains: main-thread QTimer drift.

Runs the real MainWindow offscreen (QT_QPA_PLATFORM=offscreen unless set) and, for each
scenario, starts training through the Start button, then records how late a 10 ms QTimer
fires on the GUI thread (drift = measured interval - 10 ms) while training, the live loss
plot and the status updates run. Scenarios: idle (no training), the 2-D preset (toy-2d), and
a small MNIST UNet; for each, the drift percentiles p50/p99/max in ms and the training speed.
Prints a table and one JSON object (also written to --json PATH).

    .venv/bin/python bench/ui_latency.py [--seconds 15] [--json out.json]

The CPU is often shared with other processes: say so when quoting the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMER_MS = 10


def scenario_configs():
    from core.presets import load_preset

    toy = load_preset("toy-2d")
    toy.train.steps = 10_000_000
    mnist = load_preset("mnist-ddpm")
    mnist.model.channels = 32
    mnist.model.channel_mult = (1, 2)
    mnist.model.num_res_blocks = 1
    mnist.model.attention_resolutions = ()
    mnist.model.dropout = 0.0
    mnist.train.batch_size = 32
    mnist.train.steps = 10_000_000
    mnist.train.probe_every = 100
    mnist.train.log_every = 5
    return {"toy-2d": toy, "mnist-small": mnist}


def percentile(values, q):
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def measure(app, window, seconds: float, train_config=None) -> dict:
    """Run the event loop for `seconds` while a 10 ms timer records its intervals."""
    from PySide6.QtCore import QEventLoop, QTimer

    def run_loop(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    deadline = time.monotonic() + 120
    while window.session.dataset is None or window.jobs.busy():
        run_loop(100)  # start-up jobs (data set, model description, entropy curves) first
        if time.monotonic() > deadline:
            raise RuntimeError("the start-up jobs did not finish")
    if train_config is not None:
        window.experiment.set_config(train_config, preset=None)
        deadline = time.monotonic() + 120
        while window.session.dataset_key is None or window.session.dataset_key[0] != \
                train_config.train.dataset:
            run_loop(100)
            if time.monotonic() > deadline:
                raise RuntimeError("the data set did not load")
        window.tabs.setCurrentWidget(window.loss_panel)
        window.controls.startButton.click()
        while window.training.state != "running":
            run_loop(50)
        run_loop(1500)  # the first steps and probes settle
    start_step = window.session.trainer.step if window.session.trainer is not None else 0
    intervals: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        intervals.append((now - last[0]) * 1000.0)
        last[0] = now

    timer = QTimer()
    timer.setTimerType(timer.timerType().PreciseTimer)
    timer.setInterval(TIMER_MS)
    timer.timeout.connect(tick)
    started = time.perf_counter()
    last[0] = started
    timer.start()
    run_loop(int(seconds * 1000))
    timer.stop()
    elapsed = time.perf_counter() - started
    steps = (window.session.trainer.step - start_step) if window.session.trainer is not None else 0
    if train_config is not None:
        window.stop_training()
        while window.training.is_active():
            run_loop(50)
    drift = [max(0.0, i - TIMER_MS) for i in intervals[1:]]
    return {"ticks": len(intervals), "drift_p50_ms": percentile(drift, 50),
            "drift_p99_ms": percentile(drift, 99), "drift_max_ms": max(drift) if drift else 0.0,
            "steps_per_s": steps / elapsed if train_config is not None else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per scenario")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--scenarios", default="idle,toy-2d,mnist-small")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from app.__main__ import prewarm_torch
    from core.device import configure_threads

    configure_threads()
    prewarm_torch()
    from app.main_window import MainWindow
    from app.settings import make_settings

    settings_file = Path(tempfile.mkdtemp()) / "settings.ini"
    window = MainWindow(make_settings(str(settings_file)), restore=False)
    window.resize(1280, 800)
    window.show()
    configs = scenario_configs()
    results = {}
    for name in args.scenarios.split(","):
        config = None if name == "idle" else configs[name]
        window.session.set_trainer(None)
        results[name] = measure(app, window, args.seconds, config)
    window.close()

    import torch

    meta = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "qt_platform": os.environ.get("QT_QPA_PLATFORM"), "seconds": args.seconds,
            "timer_ms": TIMER_MS, "load_average": os.getloadavg()}
    print(f"{'scenario':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'steps/s':>9} {'ticks':>6}")
    for name, r in results.items():
        rate = "-" if r["steps_per_s"] is None else f"{r['steps_per_s']:.1f}"
        print(f"{name:<12} {r['drift_p50_ms']:8.2f} {r['drift_p99_ms']:8.2f} "
              f"{r['drift_max_ms']:8.2f} {rate:>9} {r['ticks']:6d}")
    output = {"meta": meta, "results": results}
    print(json.dumps(output))
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
