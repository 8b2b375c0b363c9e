"""Test set-up: headless Qt before anything imports it, one torch thread (2-core CI)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import torch  # noqa: E402

torch.set_num_threads(1)
