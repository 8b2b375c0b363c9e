"""Opening main windows in tests (a plain module: tests/ is on sys.path via conftest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator


def open_windows(qtbot, default_path: Callable[[int], str]) -> Iterator[Callable]:
    """Yield factory(restore=False, path=None) -> a shown MainWindow whose data set has
    loaded, with its settings in `path` or default_path(number of windows opened so far);
    every window is closed when the generator resumes (the fixture's teardown)."""
    from app.main_window import MainWindow
    from app.settings import make_settings

    windows = []

    def factory(restore: bool = False, path: str | None = None):
        window = MainWindow(make_settings(path or default_path(len(windows))), restore=restore)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.session.dataset is not None, timeout=30000)
        windows.append(window)
        return window

    yield factory
    for window in windows:
        window.close()
