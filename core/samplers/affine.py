"""Runs whose every step is affine in (x, eps, z) with per-step coefficients made once on
the host: x' = a_t x + b_t eps + c_t z, and, at steps flagged `last`, x' = the model's x0
(Tweedie's denoising at the end of a run). The reverse SDE and annealed Langevin are such
runs; subclasses compute the coefficients and call `set_coefficients`."""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import SamplerRun, StepOutput


class AffineRun(SamplerRun):
    """See the module docstring. Tables are indexed by the run's step index t (B,)."""

    def set_coefficients(self, here, x_coef, eps_coef, noise_coef, last) -> None:
        """here: point tables of each step (SamplerRun.point_tables); the rest host arrays
        (num_steps,): coefficients, and a bool mask of the steps that return x0."""
        last = np.asarray(last, dtype=bool)
        noise_coef = np.where(last, 0.0, noise_coef)
        self.here = here
        self.x_coef, self.eps_coef = self.table(x_coef), self.table(eps_coef)
        self.noise_coef, self.last = self.table(noise_coef), self.table(last)
        self.noise_steps = noise_coef > 0
        self.variance_host = noise_coef ** 2
        self.has_last = bool(last.any())        # host constant: the same ops at every step

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        x0, eps = self.predict(x, t, self.here)
        view = (-1,) + (1,) * (x.ndim - 1)
        x_next = self.x_coef[t].reshape(view) * x + self.eps_coef[t].reshape(view) * eps
        if noise is not None:
            x_next = x_next + self.noise_coef[t].reshape(view) * noise
        if self.has_last:
            last = self.last[t].reshape(view)
            x_next = last * x0 + (1.0 - last) * x_next
        return StepOutput(x_next, x0, eps, self.noise_coef[t[:1]][0] ** 2)

    def record_variance(self, step: int, output: StepOutput) -> float:
        return float(self.variance_host[step])
