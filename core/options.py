"""The named choices of a diffusion: what the mean channels predict, the reverse variance,
the training loss and the kind of data, each an Enum whose value is the name used in
configs, checkpoints and the CLI, with a UI label and the properties other modules ask.

This module is the one list of these choices (core.config validates against it, the app's
combo boxes show its labels). It imports nothing heavy, so core.config can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Choice(Enum):
    """An Enum with a UI label per member (the `_labels` class attribute, by value)."""

    @property
    def label(self) -> str:
        return type(self)._labels()[self.value]

    @classmethod
    def _labels(cls) -> dict[str, str]:
        return {}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The members' values in definition order (what configs store)."""
        return tuple(member.value for member in cls)

    @classmethod
    def parse(cls, value, field: str):
        """The member for `value` (a member or its name); ValueError naming the field."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"{field} = {value!r} is invalid: must be one of {allowed}") from None


class MeanType(Choice):
    """What the model's mean channels predict."""

    EPS = "eps"  # the noise eps in x_t = sqrt(abar) x0 + sqrt(1-abar) eps
    X0 = "x0"  # x0 itself
    V = "v"  # v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022)

    @classmethod
    def _labels(cls) -> dict[str, str]:
        return {"eps": "ε (noise)", "x0": "x₀", "v": "v"}


class VarType(Choice):
    """The reverse-process variance Sigma_theta(x_t, t)."""

    FIXED_SMALL = "fixed_small"  # beta-tilde_t (posterior variance; log clipped at t=0)
    FIXED_LARGE = "fixed_large"  # beta_t, except beta-tilde_1 at t=0 (improved DDPM)
    LEARNED_RANGE = "learned_range"  # exp(v log beta_t + (1-v) log beta-tilde_t)

    @classmethod
    def _labels(cls) -> dict[str, str]:
        return {"fixed_small": "fixed small (β̃ₜ)", "fixed_large": "fixed large (βₜ)",
                "learned_range": "learned range (Σθ)"}

    @property
    def learns_sigma(self) -> bool:
        """The network outputs the variance too: 2C channels along dim 1."""
        return self is VarType.LEARNED_RANGE


class LossType(Choice):
    SIMPLE = "simple"  # MSE on the mean type's target
    HYBRID = "hybrid"  # simple + lambda_vlb * T * vlb_t with a stop-gradient mean
    VLB = "vlb"  # the per-t VLB term itself

    @classmethod
    def _labels(cls) -> dict[str, str]:
        return {"simple": "simple (MSE)", "hybrid": "hybrid (simple + λ·vlb)", "vlb": "vlb"}

    @property
    def trains_variance(self) -> bool:
        """The loss gives a learned variance a gradient (L_simple does not)."""
        return self is not LossType.SIMPLE


class DataKind(Choice):
    IMAGE = "image"  # 8-bit images in [-1, 1]: discretized Gaussian decoder
    CONTINUOUS = "continuous"  # real vectors: Gaussian density decoder

    @classmethod
    def _labels(cls) -> dict[str, str]:
        return {"image": "8-bit images", "continuous": "continuous vectors"}

    @classmethod
    def of_data(cls, kind: str) -> DataKind:
        """A data set's kind ("image", or "vector" / "continuous") as a DataKind."""
        return cls.IMAGE if kind == cls.IMAGE.value else cls.CONTINUOUS


@dataclass(frozen=True)
class NllUnit:
    """The unit a negative log-likelihood (or a VLB term) is shown in: `label` for axes and
    legends ("bits/dim"), `key` for CSV headers and JSON ("bits_per_dim"), and `per_bit`, the
    factor that turns a value in bits/dim (what core computes) into this unit."""

    label: str
    key: str
    per_bit: float

    def from_bits(self, value):
        """A value (number or array) in bits/dim, in this unit."""
        return value * self.per_bit


BITS_PER_DIM = NllUnit("bits/dim", "bits_per_dim", 1.0)
NATS_PER_DIM = NllUnit("nats/dim", "nats_per_dim", math.log(2.0))


def nll_unit(kind) -> NllUnit:
    """The one rule for likelihood units: bits/dim for 8-bit images (a discrete likelihood,
    comparable with the papers), nats/dim for continuous data (a density; the unit of the
    entropy plots). `kind` is a DataKind or a data set's kind ("image", "vector",
    "continuous")."""
    value = kind.value if isinstance(kind, DataKind) else kind
    return BITS_PER_DIM if value == DataKind.IMAGE.value else NATS_PER_DIM
