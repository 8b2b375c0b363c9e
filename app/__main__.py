"""`python -m app` / `diffusion-explorer`: open the main window."""

from __future__ import annotations

import os
import sys


def prewarm_torch() -> None:
    """Import torch.optim in the main thread now: done lazily inside a worker it costs ~1 s
    with the GIL held and freezes the window (QT-NOTES pitfall 7)."""
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


SLOW_EXIT_ENV = "DIFFUSION_EXPLORER_SLOW_EXIT"  # "1": leave through the interpreter's teardown


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    from PySide6.QtWidgets import QApplication

    from app import APPLICATION, ORGANIZATION

    argv = list(sys.argv if argv is None else argv)
    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication(argv)
    app.setStyle("Fusion")
    from app.style import apply_style

    apply_style(app)
    from core.device import configure_threads

    configure_threads()                 # the rule the CLI uses too (core.device.default_threads)
    from PySide6.QtCore import QTimer

    from app.main_window import MainWindow

    window = MainWindow()
    window.show()
    # after the first paint: the window appears seconds sooner, and the one-off freeze
    # happens before anyone can press Start
    note = "Preparing PyTorch's optimizers…"
    window.statusBar().showMessage(note)

    def prewarm_after_first_paint() -> None:
        prewarm_torch()
        if window.statusBar().currentMessage() == note:
            window.statusBar().clearMessage()

    QTimer.singleShot(200, prewarm_after_first_paint)
    return exit_now_if_closed_cleanly(window, app.exec())


def exit_now_if_closed_cleanly(window, code: int) -> int:
    """End the process with `code` at once when the window closed cleanly (settings written,
    no checkpoint save in flight: MainWindow.closed_cleanly). A worker still in a long
    training or sampling step is cut off there rather than waited for, and CPython's
    teardown of torch (1-3 s after the window is gone, bench/close_exit_time.py) is
    skipped. Otherwise, or with $DIFFUSION_EXPLORER_SLOW_EXIT=1, wait for every worker
    thread to end and return `code` for a normal exit (never destroying a running thread)."""
    if window.closed_cleanly() and os.environ.get(SLOW_EXIT_ENV) != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    from app.workers import wait_for_detached_threads

    wait_for_detached_threads()
    return code


if __name__ == "__main__":
    sys.exit(main())
