"""Linear multistep solvers of the probability-flow ODE in data prediction (DPM-Solver++,
UniPC): one model call per step, each step a fixed linear combination of the sample, the
previous corrected sample and the last few x0 predictions, with per-step coefficients
computed once on the host from the run's alpha-bar sequence (float64) and kept on the
device, so the step is one capture-safe function.

Notation (Lu et al. 2022, "DPM-Solver++"): at step k = 0..S-1 (k = 0 at the noisiest
timestep; the run's index is t = S-1-k) the sample is x_k = alpha_k x0 + sigma_k eps with
alpha_k = sqrt(abar_k), sigma_k = sqrt(1 - abar_k), lambda_k = log(alpha_k / sigma_k); the
last step goes to the data (abar = 1, lambda = +inf). m_k is the model's (clipped) x0
prediction at x_k. A step computes

    corrected = keep_k x_k + from_last_k x_last + sum_j corr_kj m_{k-j}     (j = 0..K)
    x_{k+1}   = pred_x_k corrected + sum_j pred_kj m_{k-j}

and remembers x_last = corrected and m_k, m_{k-1}, ... (K of them). Solvers without a
corrector keep keep_k = 1 and the rest 0.
"""

from __future__ import annotations

import numpy as np
import torch

from core.samplers.base import SamplerRun, StepOutput


def vp_terms(abar: np.ndarray):
    """(alpha, sigma, lambda) float64 of alpha-bar values; abar = 1 gives sigma 0 and
    lambda +inf (the data)."""
    abar = np.asarray(abar, dtype=np.float64)
    alpha, sigma = np.sqrt(abar), np.sqrt(np.maximum(1.0 - abar, 0.0))
    with np.errstate(divide="ignore"):
        lam = np.log(alpha) - np.log(sigma)
    return alpha, sigma, lam


class MultistepRun(SamplerRun):
    """Subclasses set HISTORY (K) and fill `coefficients(alpha, sigma, lam)` returning the
    numpy tables (S,) keep, from_last, pred_x and (S, K+1) corr, pred, in step order k."""

    HISTORY = 1

    def __init__(self, diffusion, model, **kwargs):
        super().__init__(diffusion, model, **kwargs)
        abar = diffusion.schedule.alphas_cumprod[::-1]             # step order: noisiest first
        abar = np.append(abar, 1.0)                                # the data after the last step
        tables = self.coefficients(*vp_terms(abar))
        self.noise_steps = np.zeros(self.num_steps, dtype=bool)
        # stored by the run's index t = S-1-k, as the step receives it
        self.keep, self.from_last, self.pred_x = (self.table(a[::-1]) for a in tables[:3])
        self.corr, self.pred = (self.table(a[::-1]) for a in tables[3:])
        self.uses_last = bool(np.any(tables[1]))
        self.corr_terms = [j for j in range(self.HISTORY + 1) if np.any(tables[3][:, j])]
        self.pred_terms = [j for j in range(self.HISTORY + 1) if np.any(tables[4][:, j])]
        self._last: torch.Tensor | None = None
        self._previous: list[torch.Tensor] = []

    def coefficients(self, alpha, sigma, lam):
        raise NotImplementedError

    def start(self, x: torch.Tensor) -> None:
        """Fresh history buffers for a run from x_T (zeroed in place: a captured graph keeps
        their addresses)."""
        if self._last is None or self._last.shape != x.shape:
            self._last = torch.zeros_like(x)
            self._previous = [torch.zeros_like(x) for _ in range(self.HISTORY)]
        else:
            for buffer in (self._last, *self._previous):
                buffer.zero_()

    def state_tensors(self) -> list[torch.Tensor]:
        return [] if self._last is None else [self._last, *self._previous]

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None,
             variant=0) -> StepOutput:
        if self._last is None:
            self.start(x)
        out = self.model_output(x, t)
        m = out["pred_xstart"]
        history = [m, *self._previous]                  # m_k, m_{k-1}, ..., m_{k-K}
        view = (-1,) + (1,) * (x.ndim - 1)

        def gather(table, j=None):
            values = table[t] if j is None else table[t, j]
            return values.reshape(view)

        corrected = gather(self.keep) * x
        if self.uses_last:
            corrected = corrected + gather(self.from_last) * self._last
        for j in self.corr_terms:
            corrected = corrected + gather(self.corr, j) * history[j]
        x_next = gather(self.pred_x) * corrected
        for j in self.pred_terms:
            x_next = x_next + gather(self.pred, j) * history[j]
        if self.uses_last:
            self._last.copy_(corrected)
        for older, newer in zip(reversed(self._previous), reversed(history[:-1]), strict=True):
            older.copy_(newer)                           # shift: m_{k-1} <- m_k, ...
        return StepOutput(x_next, m, out["pred_eps"], torch.zeros((), device=x.device))
