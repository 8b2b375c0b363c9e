"""Seconds from closing the main window to the end of the process, with the app's fast exit
(os._exit once the window closed cleanly) and with the interpreter's normal teardown
($DIFFUSION_EXPLORER_SLOW_EXIT=1), which spends 1-3 s tearing torch down.

    .venv/bin/python bench/close_exit_time.py [--runs 3]

Each run starts `diffusion-explorer` offscreen (settings in a temporary file), waits 3 s,
closes the window and times close() -> process gone. Prints the median per mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import sys, time
    from PySide6.QtCore import QTimer
    import app.main_window as main_window
    import app.__main__ as entry

    shown = main_window.MainWindow.show

    def show_then_close(self):
        shown(self)

        def close():
            print(f"CLOSE {time.time():.6f}", flush=True)
            self.close()
        QTimer.singleShot(3000, close)

    main_window.MainWindow.show = show_then_close
    sys.exit(entry.main(["diffusion-explorer"]))
""")


def close_to_exit(slow: bool, settings: str) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DIFFUSION_EXPLORER_SETTINGS": settings,
           "DIFFUSION_EXPLORER_SLOW_EXIT": "1" if slow else "0"}
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    closed = None
    for line in process.stdout:
        if line.startswith("CLOSE"):
            closed = float(line.split()[1])
    process.wait()
    ended = time.time()
    if process.returncode != 0 or closed is None:
        raise RuntimeError(f"the app exited with {process.returncode} before closing")
    return ended - closed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    settings = str(Path(tempfile.mkdtemp()) / "settings.ini")
    results = {}
    for name, slow in (("fast exit", False), ("interpreter teardown", True)):
        times = [close_to_exit(slow, settings) for _ in range(args.runs)]
        results[name] = statistics.median(times)
        print(f"{name:>22}: close -> process gone, median {results[name]:.2f} s "
              f"over {args.runs} runs ({', '.join(f'{t:.2f}' for t in times)})", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return results


if __name__ == "__main__":
    main()
