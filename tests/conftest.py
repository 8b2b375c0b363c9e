"""Test set-up: headless Qt before anything imports it, one torch thread (2-core CI), and a
private cache folder (the image-feature networks) so tests never write to the user's cache;
shared fixtures."""

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
os.environ["DIFFUSION_EXPLORER_CACHE"] = tempfile.mkdtemp(prefix="diffusion-explorer-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ring():
    """The toy-2d preset's diffusion on 8 Gaussians (4000 points), with its exact eps
    (core.exact.ExactEps: the mixture's score in closed form): (data, diffusion, exact)."""
    from core.build import diffusion_from_config
    from core.data import get_dataset
    from core.exact import ExactEps
    from core.presets import load_preset

    config = load_preset("toy-2d")
    data = get_dataset("8gaussians", num_samples=4000, seed=0)
    diffusion = diffusion_from_config(config, data.kind)
    return data, diffusion, ExactEps(data.mixture, diffusion.schedule)
