"""Test set-up: headless Qt before anything imports it, one torch thread (2-core CI), and a
private cache folder (the image-feature networks) so tests never write to the user's cache."""

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
os.environ["DIFFUSION_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="diffusion-explorer-test-cache-")

import torch  # noqa: E402

torch.set_num_threads(1)
