"""Image features for sample scores: a small network trained on the data set itself.

No package ships Inception weights offline, so the features come from a network the
explorer trains on the same data, deterministically, and keeps in a cache:

- labelled data (at least 2 classes): a CLASSIFIER trained with cross-entropy on the
  training split; the test split's accuracy is stored with it;
- unlabelled data (a folder of pictures without sub-folders): an AUTOENCODER, the same
  encoder trained to reconstruct the image average-pooled to at most 16x16 through a
  linear decoder (mean squared error; the test split's error is stored). Its features
  describe layout and intensity, not classes; its label says "autoencoder" so no score
  passes for a classifier's.

The network (`FeatureNet`), for images (N, C, H, W) in [-1, 1]:
conv3x3(C -> 16), ReLU, maxpool 2 -> conv3x3(16 -> 32), ReLU, maxpool 2 (ceil mode, so
4x4 inputs work) -> adaptive average pool to 2x2 -> linear(128 -> F = 64) = the FEATURES
(taken before the head's ReLU, so no unit is dead and their covariance is full rank)
-> ReLU -> linear(F -> classes or C h w).

Determinism: weights are initialised from torch.manual_seed(seed) inside
torch.random.fork_rng (the global generator is left as it was); batches come from a
private generator; there is no dropout or batch norm. Two builds with the same torch and
thread count give bitwise identical weights (other thread counts: equal up to float
rounding). Adam, a fixed number of steps.

Cache: one safetensors file per (data set, settings) in <cache>/features/, <cache> =
the `cache_dir` argument, else $DIFFUSION_EXPLORER_CACHE, else ~/.cache/diffusion-explorer.
Its name holds a hash of the data set's name, shape, numbers of items and classes, a
BLAKE2b digest of the training images and labels, the mode and the settings. Loading
never unpickles (safetensors + JSON metadata). A cache file that cannot be used (corrupt,
truncated, another format, another key, wrong or non-finite tensors) is REBUILT: it holds
nothing the user made and retraining is deterministic, so the only cost is time; a
FeatureCacheWarning names the file and the problem. A cache that cannot be written costs
the same warning, and the extractor is returned all the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from core.atomic_write import AtomicWriteError, write_atomically
from core.data.dataset import Dataset

CACHE_ENV = "DIFFUSION_EXPLORER_CACHE"
DEFAULT_CACHE = Path("~/.cache/diffusion-explorer")
FORMAT_NAME = "diffusion-explorer-features"
FORMAT_VERSION = 1
CLASSIFIER, AUTOENCODER = "classifier", "autoencoder"


class FeatureCacheWarning(UserWarning):
    """A feature cache file was unusable (and is being rebuilt) or could not be written."""


@dataclass(frozen=True)
class FeatureSettings:
    """steps of Adam at learning_rate on batches of batch_size training images (drawn with
    replacement); width F of the features; seed of the weights and the batches; the
    autoencoder's target is the image average-pooled to at most target_side^2 pixels."""

    steps: int = 600
    batch_size: int = 128
    learning_rate: float = 2e-3
    width: int = 64
    seed: int = 0
    target_side: int = 16


class FeatureNet(nn.Module):
    """(N, C, H, W) -> features (N, width) -> outputs (N, num_outputs); see the module."""

    def __init__(self, in_channels: int, num_outputs: int, width: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32 * 4, width),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, num_outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def feature_mode(dataset: Dataset) -> str:
    """CLASSIFIER when the data set has labels of at least 2 classes, else AUTOENCODER."""
    labelled = dataset.train_labels is not None and (dataset.num_classes or 0) >= 2
    return CLASSIFIER if labelled else AUTOENCODER


def _target_size(shape: tuple[int, ...], settings: FeatureSettings) -> tuple[int, int]:
    return min(shape[1], settings.target_side), min(shape[2], settings.target_side)


def _num_outputs(dataset: Dataset, mode: str, settings: FeatureSettings) -> int:
    if mode == CLASSIFIER:
        return int(dataset.num_classes)
    height, width = _target_size(dataset.shape, settings)
    return dataset.shape[0] * height * width


def _targets(dataset_images: torch.Tensor, labels, mode: str, settings: FeatureSettings):
    if mode == CLASSIFIER:
        return labels
    size = _target_size(tuple(dataset_images.shape[1:]), settings)
    return F.adaptive_avg_pool2d(dataset_images, size).flatten(1)


def _loss(outputs: torch.Tensor, targets: torch.Tensor, mode: str) -> torch.Tensor:
    return F.cross_entropy(outputs, targets) if mode == CLASSIFIER else F.mse_loss(outputs, targets)


@dataclass
class TrainedNet:
    """A trained FeatureNet, its mode, and its test score: accuracy in [0, 1] (classifier)
    or mean squared reconstruction error per target pixel (autoencoder)."""

    net: FeatureNet
    mode: str
    test_score: float


def train_feature_net(dataset: Dataset, settings: FeatureSettings = FeatureSettings()) -> TrainedNet:
    """Train the FeatureNet of `dataset` (kind "image") on its training split, on the CPU,
    and score it on the test split. Deterministic: see the module docstring."""
    mode = feature_mode(dataset)
    channels = dataset.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = FeatureNet(channels, _num_outputs(dataset, mode, settings), settings.width)
    images = dataset.train.detach().to("cpu", torch.float32)
    targets = _targets(images, dataset.train_labels, mode, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    net.train()
    for _ in range(settings.steps):
        index = torch.randint(len(images), (settings.batch_size,), generator=generator)
        loss = _loss(net(images[index]), targets[index], mode)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval().requires_grad_(False)
    return TrainedNet(net, mode, _test_score(net, dataset, mode, settings))


@torch.no_grad()
def _test_score(net: FeatureNet, dataset: Dataset, mode: str, settings: FeatureSettings) -> float:
    images = dataset.test.detach().to("cpu", torch.float32)
    outputs = torch.cat([net(chunk) for chunk in images.split(512)])
    if mode == CLASSIFIER:
        return float((outputs.argmax(dim=1) == dataset.test_labels).double().mean())
    return float(F.mse_loss(outputs, _targets(images, None, mode, settings)))


# ---------------------------------------------------------------- the extractor

@dataclass
class FeatureExtractor:
    """Callable: images (N, C, H, W) in [-1, 1] (torch or numpy, any device; not clipped)
    -> (N, F) float64 features, computed on the CPU in batches without gradients.

    name: "<data set>-classifier" or "<data set>-autoencoder"; label: "<name> features"
    (scores are "FD in <label>", never FID). path: the cache file (None if unwritten);
    loaded: True when read from the cache, False when trained by this call."""

    net: FeatureNet
    name: str
    mode: str
    image_shape: tuple[int, ...]
    test_score: float
    path: Path | None
    loaded: bool

    @property
    def label(self) -> str:
        return f"{self.name} features"

    @property
    def width(self) -> int:
        return self.net.encoder[-1].out_features

    @torch.no_grad()
    def __call__(self, images, batch_size: int = 512) -> np.ndarray:
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(np.asarray(images))
        images = images.detach().to("cpu", torch.float32)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.label}: expected images of shape (N, "
                             f"{', '.join(map(str, self.image_shape))}), got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError(f"{self.label}: the images hold NaN or infinity; drop those "
                             "samples first and report how many were dropped")
        if len(images) == 0:
            return np.zeros((0, self.width))
        chunks = [self.net.encoder(chunk) for chunk in images.split(batch_size)]
        return torch.cat(chunks).double().numpy()


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/features: cache_dir, else $DIFFUSION_EXPLORER_CACHE, else ~/.cache/..."""
    root = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser() / "features"


def _digest(*arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is not None:
            digest.update(np.ascontiguousarray(array.detach().cpu().numpy()).data)
    return digest.hexdigest()


def cache_key(dataset: Dataset, settings: FeatureSettings) -> dict:
    """What the cached network depends on (JSON-ready)."""
    return {
        "format_version": FORMAT_VERSION, "name": dataset.name, "shape": list(dataset.shape),
        "train_items": len(dataset.train), "test_items": len(dataset.test),
        "num_classes": dataset.num_classes, "mode": feature_mode(dataset),
        "data_digest": _digest(dataset.train, dataset.train_labels),
        "settings": asdict(settings),
    }


def cache_path(dataset: Dataset, settings: FeatureSettings, cache_dir=None) -> Path:
    key = cache_key(dataset, settings)
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name)[:40] or "data"
    return cache_folder(cache_dir) / f"{stem}-{key['mode']}-{tag}.safetensors"


class _Unusable(Exception):
    """Why a cache file cannot be used (the message finishes "<path>: ...")."""


def _read_cache(path: Path, key: dict, net: FeatureNet) -> float:
    """Load the weights of `path` into `net`; its test score. _Unusable on any problem."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:     # safetensors raises its own errors for corrupt files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Unusable(f"is not a readable safetensors file ({detail})") from None
    if metadata.get("format") != FORMAT_NAME:
        raise _Unusable(f"is not a feature cache (format is not {FORMAT_NAME!r})")
    try:
        stored_key = json.loads(metadata.get("key", ""))
        test_score = float(metadata["test_score"])
    except (ValueError, KeyError):
        raise _Unusable("has unreadable metadata") from None
    if stored_key != key:
        raise _Unusable("was made for another data set or other settings")
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise _Unusable(f"holds tensors that do not fit the network ({str(exc).splitlines()[0]})") from None
    if not all(torch.isfinite(t).all() for t in tensors.values()) or not math.isfinite(test_score):
        raise _Unusable("holds non-finite values")
    return test_score


def _write_cache(path: Path, key: dict, trained: TrainedNet) -> bool:
    tensors = {name: t.detach().clone().contiguous() for name, t in trained.net.state_dict().items()}
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                "key": json.dumps(key, sort_keys=True), "test_score": repr(trained.test_score)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temp: save_file(tensors, str(temp), metadata=metadata),
                         errors=(Exception,))
    except (OSError, AtomicWriteError) as exc:
        warnings.warn(f"feature cache {path}: could not be written ({exc}); the features are "
                      "used without caching", FeatureCacheWarning, stacklevel=3)
        return False
    return True


def feature_extractor(dataset: Dataset, cache_dir: str | os.PathLike | None = None,
                      settings: FeatureSettings = FeatureSettings()) -> FeatureExtractor:
    """The FeatureExtractor of an image data set: loaded from the cache when a usable file
    is there, else trained (train_feature_net) and cached. See the module
    docstring for the network, the cache and what happens to unusable cache files."""
    if dataset.kind != "image" or len(dataset.shape) != 3:
        raise ValueError(f"{dataset.name}: features need image data (N, C, H, W), "
                         f"not {dataset.kind} data of shape {dataset.shape}")
    mode = feature_mode(dataset)
    key = cache_key(dataset, settings)
    path = cache_path(dataset, settings, cache_dir)
    name = f"{dataset.name}-{mode}"
    if path.exists():
        net = FeatureNet(dataset.shape[0], _num_outputs(dataset, mode, settings), settings.width)
        try:
            test_score = _read_cache(path, key, net)
        except _Unusable as problem:
            warnings.warn(f"feature cache {path}: {problem}; rebuilding it", FeatureCacheWarning,
                          stacklevel=2)
        else:
            net.eval().requires_grad_(False)
            return FeatureExtractor(net, name, mode, tuple(dataset.shape), test_score, path, True)
    trained = train_feature_net(dataset, settings)
    written = _write_cache(path, key, trained)
    return FeatureExtractor(trained.net, name, mode, tuple(dataset.shape), trained.test_score,
                            path if written else None, False)
