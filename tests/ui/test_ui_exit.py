"""Closing the window ends the process at once (os._exit after a clean shutdown), with the
settings written first and without CPython's slow teardown of torch."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from app.settings import SETTINGS_ENV

SCRIPT = textwrap.dedent("""
    import atexit, sys
    from pathlib import Path
    from PySide6.QtCore import QTimer
    import app.main_window as main_window
    import app.__main__ as entry

    marker = Path(sys.argv[1])
    atexit.register(lambda: marker.write_text("the interpreter's teardown ran"))
    shown = main_window.MainWindow.show

    def show_then_close(self):
        shown(self)
        self.resize(1111, 777)
        QTimer.singleShot(1500, self.close)

    main_window.MainWindow.show = show_then_close
    sys.exit(entry.main(["diffusion-explorer"]))
""")


def run_app(tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess, Path, Path]:
    marker, settings = tmp_path / "atexit.txt", tmp_path / "settings.ini"
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", SETTINGS_ENV: str(settings),
                   **env}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], env=environment,
                          capture_output=True, text=True, timeout=300)
    return proc, marker, settings


def test_closing_the_window_skips_the_interpreter_teardown_after_saving(tmp_path):
    proc, marker, settings = run_app(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "the process went through CPython's teardown"
    parser = configparser.ConfigParser()
    parser.read(settings)
    assert settings.exists() and parser.sections(), "the settings were not written before exit"
    assert "Traceback" not in proc.stderr


def test_the_slow_exit_stays_available(tmp_path):
    proc, marker, _settings = run_app(tmp_path, DIFFUSION_EXPLORER_SLOW_EXIT="1")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "the interpreter's teardown ran"
