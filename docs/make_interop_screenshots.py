"""Screenshots of a model from elsewhere opened in the window (issue 18), for the README.

google/ddpm-cifar10-32's configuration (its unet/config.json and scheduler_config.json,
written out in tests/test_interop_diffusers.py) with seeded random weights, saved by
diffusers' own save_pretrained into a temporary folder (nothing is downloaded), opened with
File → Open model… through the real window (offscreen, CPU). The form then proposes the
first image data set of the registry (MNIST 5k) at the model's shape, 3×32×32 in colour; the
opened weights become the current model and one probe gives their VLB per t:

    docs/screenshots/cifar10-open-model.png   the Model tab: what was recognised, the tree
    docs/screenshots/cifar10-open-vlb.png     the VLB terms tab: L_t of the opened weights

The probe (20 t x 64 images through a 35.7M-parameter UNet) takes about 5 minutes on a
2-core CPU. Needs diffusers (the tests' optional dependency).

    .venv/bin/python docs/make_interop_screenshots.py [--out docs/screenshots]
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "docs"))

from make_screenshots import open_window, save_small, shown, wait, wait_for  # noqa: E402

NAME = "cifar10-open"


def cifar10_folder(parent: Path) -> Path:
    """The ddpm-cifar10-32 pipeline folder with seeded random weights."""
    from interop_models import random_unet, write_pipeline
    from test_interop_diffusers import CIFAR10_SCHEDULER, CIFAR10_UNET

    return write_pipeline(parent / "ddpm-cifar10-32", random_unet(CIFAR10_UNET, seed=0),
                          CIFAR10_UNET, CIFAR10_SCHEDULER)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    temporary = Path(tempfile.mkdtemp())
    folder = cifar10_folder(temporary)
    window = open_window(temporary)
    wait_for(lambda: window.session.dataset is not None, 120, "the first data set")
    opener = window.model_files.opener
    errors = []
    window.error_shown.connect(errors.append)
    started = time.monotonic()
    opener.open_path(str(folder))
    wait_for(lambda: opener.trainer is not None or errors, 600, "the opened model on data")
    if errors:
        raise SystemExit(f"opening failed: {errors[0]}")
    wait_for(lambda: window.session.probes, 3600, "the VLB per t")
    print(f"{NAME}: opened and probed in {time.monotonic() - started:.0f} s", flush=True)
    for tab, panel in (("model", window.model_panel), ("vlb", window.vlb_panel)):
        window.tabs.setCurrentWidget(panel)
        wait(600)
        path = out / f"{NAME}-{tab}.png"
        save_small(window.grab().toImage(), path)
        print(f"  {shown(path)}", flush=True)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
