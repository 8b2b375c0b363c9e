"""Peak memory of loading image folders, measured in a fresh process (run as a script).

    python faults_big_image.py FOLDER [FOLDER ...]

Prints one JSON line per folder: {"folder", "grown_mib", "train", "test", "skipped", "shape"}
or {"folder", "grown_mib", "error"}. grown_mib is how far the process's peak resident memory
(ru_maxrss) rose while loading that folder, above the peak reached before it.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def main() -> None:
    from core.data import DataError, get_dataset

    for folder in sys.argv[1:]:
        before = peak_mib()
        try:
            dataset = get_dataset(folder, image_size=16, grayscale=False)
            result = {"train": len(dataset.train), "test": len(dataset.test),
                      "skipped": dataset.skipped, "shape": list(dataset.shape)}
        except DataError as exc:
            result = {"error": str(exc)}
        result.update(folder=folder, grown_mib=peak_mib() - before)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
