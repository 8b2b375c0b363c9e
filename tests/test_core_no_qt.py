"""core/ must never import Qt: import every core module in a fresh interpreter and check."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import core

QT_PREFIXES = ("PySide6", "PyQt", "shiboken6", "pyqtgraph")
ROOT = Path(core.__file__).resolve().parent.parent

CHECK = """
import importlib, pkgutil, sys
{extra}
names = []
if {import_core}:
    import core
    names = ["core"] + [m.name for m in pkgutil.walk_packages(core.__path__, "core.")
                        if not m.name.endswith("__main__")]  # __main__ would run the CLI
for name in names:
    importlib.import_module(name)
qt = sorted(m for m in sys.modules if m.startswith({prefixes!r}))
print("IMPORTED", len(names))
print("QT", ",".join(qt))
"""


def qt_modules_after_importing_core(extra: str = "", import_core: bool = True) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(extra=extra, import_core=import_core, prefixes=QT_PREFIXES)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.partition(" ")[::2] for line in result.stdout.strip().splitlines())
    return int(lines["IMPORTED"]), lines["QT"]


def test_importing_every_core_module_loads_no_qt():
    expected = 1 + sum(1 for m in pkgutil.walk_packages(core.__path__, "core.")
                       if not m.name.endswith("__main__"))
    imported, qt = qt_modules_after_importing_core()
    assert imported == expected
    assert qt == "", f"core pulled in Qt modules: {qt}"


def test_the_check_does_see_qt_when_it_is_imported():
    _, qt = qt_modules_after_importing_core("import shiboken6", import_core=False)
    assert "shiboken6" in qt.split(",")
