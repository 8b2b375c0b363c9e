"""Gaussian diffusion: forward process, model-parameterised reverse process, losses, bits/dim.

One class, `GaussianDiffusion`, owns the DDPM / improved-DDPM math on a `NoiseSchedule`
(zero-based t; see core/schedule.py). Shapes: x0, x_t, noise are (B, C, H, W) images or
(B, D) vectors; t is a LongTensor (B,) of indices into this diffusion's schedule. The model
is called as model(x_t, schedule.timestep_map[t], **model_kwargs), i.e. with timesteps of
the original, unrespaced schedule, and returns x's shape, or 2C channels along dim 1 for
var_type "learned_range" (first C: the mean parameterisation, last C: the raw variance
interpolation value in [-1, 1]).

Units. Every VLB quantity is in bits per dimension: nats averaged over all non-batch
dimensions, divided by ln 2. For data_kind "image" the t=0 decoder term is the negative log
of a discretized Gaussian over 256 bins, so totals are the usual NLL of 8-bit data in
bits/dim. For data_kind "continuous" the t=0 term is a Gaussian density, so totals are
bits per dimension of a continuous density: a differential quantity that can be negative.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.distributions import (
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    normal_kl,
)
from core.losses import LOSSES, LossInputs
from core.options import DataKind, LossType, MeanType, VarType
from core.schedule import NoiseSchedule

__all__ = ["DataKind", "GaussianDiffusion", "LossType", "MeanType", "VarType", "clip_bounds",
           "mean_flat"]


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def clip_bounds(clip, like: torch.Tensor):
    """(low, high) for clamping x0 estimates, or None.

    clip: False/None -> None; True -> (-1.0, 1.0), the range of images; (low, high) -> that
    box. Numbers stay Python floats (kernel arguments: no tensor is made, so a captured CUDA
    graph needs no host-to-device copy); arrays or tensors broadcastable to `like`
    (per-dimension bounds (D,) for vectors (N, D)) become tensors on like's device and
    dtype, without a copy when they are there already (core.samplers prepares them once)."""
    if isinstance(clip, (tuple, list)):
        if len(clip) != 2:
            raise ValueError(f"a clip box must be a (low, high) pair, got {len(clip)} items")
        bounds = clip
    elif clip is not None and bool(clip):
        bounds = (-1.0, 1.0)
    else:
        return None
    if all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
        return float(bounds[0]), float(bounds[1])
    return tuple(torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in bounds)


def _concrete_device(device: torch.device | str) -> torch.device:
    """torch.device(device) with the current CUDA index filled in ("cuda" -> "cuda:0"), so
    a tensor's device and a name find the same cached tables."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class GaussianDiffusion:
    """DDPM / improved-DDPM diffusion on `schedule`.

    Args:
        schedule: a NoiseSchedule (possibly respaced).
        mean_type: "eps" | "x0" | "v" (or a MeanType).
        var_type: "fixed_small" | "fixed_large" | "learned_range" (or a VarType).
        loss_type: "simple" | "hybrid" | "vlb" (or a LossType).
        lambda_vlb: weight of the VLB in the hybrid loss (improved DDPM: 0.001).
        data_kind: "image" | "continuous" (or a DataKind): picks the t=0 decoder likelihood
            and the default of `clip_denoised` in `calc_bpd_loop` (clip images only).
    """

    def __init__(self, schedule: NoiseSchedule, mean_type="eps", var_type="fixed_small",
                 loss_type="simple", lambda_vlb: float = 0.001, data_kind="image"):
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a core.schedule.NoiseSchedule, got {type(schedule)}")
        self.schedule = schedule
        self.num_timesteps = schedule.num_timesteps
        self.mean_type = MeanType.parse(mean_type, "mean_type")
        self.var_type = VarType.parse(var_type, "var_type")
        self.loss_type = LossType.parse(loss_type, "loss_type")
        self.data_kind = DataKind.parse(data_kind, "data_kind")
        lambda_vlb = float(lambda_vlb)
        if not math.isfinite(lambda_vlb) or lambda_vlb < 0:
            raise ValueError(f"lambda_vlb = {lambda_vlb!r} is invalid: must be finite and >= 0")
        self.lambda_vlb = lambda_vlb

        # fixed_large uses beta_t but beta-tilde_1 at t=0, where beta_0 would make the
        # decoder far too wide (improved DDPM's convention).
        first = schedule.posterior_variance[1] if self.num_timesteps > 1 else schedule.betas[0]
        self._large_variance = np.append(first, schedule.betas[1:])
        self._large_log_variance = np.log(self._large_variance)
        self._log_betas = np.log(schedule.betas)
        # a fixed per-step variance that replaces var_type's (with_reverse_variance)
        self.reverse_variance: np.ndarray | None = None
        self._reverse_log_variance: np.ndarray | None = None
        # Analytic-DPM's Gamma_t (S,) and the data variance it was clipped with, where
        # core.analytic_dpm made this diffusion (samplers other than DDPM derive theirs)
        self.eps_norm_sq: np.ndarray | None = None
        self.data_variance: float | None = None
        self._device_tables: dict[tuple, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def learns_sigma(self) -> bool:
        """True when the model must output 2C channels (mean and variance)."""
        return self.var_type is VarType.LEARNED_RANGE

    def respaced(self, use_timesteps) -> GaussianDiffusion:
        """The same diffusion (types, lambda, data kind) on schedule.respace(use_timesteps)."""
        return GaussianDiffusion(self.schedule.respace(use_timesteps), self.mean_type,
                                 self.var_type, self.loss_type, self.lambda_vlb, self.data_kind)

    def with_reverse_variance(self, variance) -> GaussianDiffusion:
        """This diffusion with p(x_{t-1} | x_t) using the given variance (T,) instead of its
        var_type's: e.g. Analytic-DPM's sigma*^2 (core.analytic_dpm). A learned_range model
        still outputs 2C channels; its variance channels are then ignored. Entries must be
        finite and > 0 for t >= 1; at t = 0 (no noise is added when sampling; the decoder's
        width) a value <= 0 becomes beta-tilde_1, the clipped-log-variance convention."""
        variance = np.array(variance, dtype=np.float64)
        if variance.shape != (self.num_timesteps,):
            raise ValueError(f"reverse variance has shape {variance.shape}, expected "
                             f"({self.num_timesteps},)")
        if not np.all(np.isfinite(variance)) or np.any(variance[1:] <= 0):
            raise ValueError("reverse variance must be finite and positive for t >= 1")
        if variance[0] <= 0:
            variance[0] = (self.schedule.posterior_variance[1] if self.num_timesteps > 1
                           else self.schedule.betas[0])
        other = GaussianDiffusion(self.schedule, self.mean_type, self.var_type, self.loss_type,
                                  self.lambda_vlb, self.data_kind)
        other.reverse_variance = variance
        other._reverse_log_variance = np.log(variance)
        return other

    def __repr__(self) -> str:
        return (f"GaussianDiffusion(T={self.num_timesteps}, mean={self.mean_type.value}, "
                f"var={self.var_type.value}, loss={self.loss_type.value}, "
                f"data={self.data_kind.value})")

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> None:
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},) (one timestep per batch "
                             f"element), got {tuple(t.shape)}")

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The original-schedule timesteps the model sees: timestep_map[t], LongTensor (B,)."""
        return self.device_tables(t.device)["timestep_map"][t]

    # ------------------------------------------------------------------ device tables
    def table_arrays(self) -> dict[str, np.ndarray]:
        """Every per-timestep table the math gathers from, by name: float64 (T,) arrays of
        the schedule (NoiseSchedule's attributes), "one_minus_alphas_cumprod", "log_betas",
        "large_variance" / "large_log_variance" (fixed_large) and, with a reverse variance,
        "reverse_variance" / "reverse_log_variance"; "timestep_map" is int64 (T,)."""
        arrays = {name: value for name, value in vars(self.schedule).items()
                  if isinstance(value, np.ndarray) and value.ndim == 1}
        arrays.update(one_minus_alphas_cumprod=1.0 - self.schedule.alphas_cumprod,
                      log_betas=self._log_betas, large_variance=self._large_variance,
                      large_log_variance=self._large_log_variance)
        if self.reverse_variance is not None:
            arrays.update(reverse_variance=self.reverse_variance,
                          reverse_log_variance=self._reverse_log_variance)
        return arrays

    def device_tables(self, device: torch.device | str,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """table_arrays() as tensors on `device`: float tables in `dtype` (the float64 value
        rounded once, as core.schedule.extract does), "timestep_map" int64. Made once per
        (device, dtype) and kept for the life of this object, so a step gathers without a
        host-to-device copy and a captured CUDA graph may hold their addresses."""
        device = _concrete_device(device)
        key = (device, dtype)
        tables = self._device_tables.get(key)
        if tables is None:
            tables = {}
            for name, array in self.table_arrays().items():
                kind = torch.long if array.dtype.kind in "iu" else dtype
                tables[name] = torch.from_numpy(np.ascontiguousarray(array)).to(kind).to(device)
            self._device_tables[key] = tables       # one assignment: safe across threads
        return tables

    def _gather(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[name][t] as (B, 1, ..., 1), broadcastable to like's shape: float64 tables for
        float64 math (exact analysis), else float32 (the float64 value rounded once)."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        tables = self._device_tables.get((t.device, dtype))   # a tensor's device is concrete
        if tables is None:
            tables = self.device_tables(t.device, dtype)
        values = tables[name][t]
        return values.reshape(values.shape + (1,) * (like.ndim - 1))

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        """q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I).

        Returns (mean, variance, log_variance): mean has x0's shape, the other two are
        (B, 1, ..., 1) broadcastable to it.
        """
        mean = self._gather("sqrt_alphas_cumprod", t, x0) * x0
        variance = self._gather("one_minus_alphas_cumprod", t, x0)
        log_variance = self._gather("log_one_minus_alphas_cumprod", t, x0)
        return mean, variance, log_variance

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """A draw of x_t ~ q(x_t | x_0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, x0's shape."""
        self._check_t(t, x0)
        if noise is None:
            noise = torch.randn_like(x0)
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
        return (self._gather("sqrt_alphas_cumprod", t, x0) * x0
                + self._gather("sqrt_one_minus_alphas_cumprod", t, x0) * noise)

    def q_posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """q(x_{t-1} | x_t, x_0) = N(coef1_t x0 + coef2_t x_t, beta-tilde_t I).

        Returns (mean, variance, log_variance): mean has x0's shape, variance and the clipped
        log variance (log beta-tilde_1 at t=0) are (B, 1, ..., 1).
        """
        mean = (self._gather("posterior_mean_coef1", t, x_t) * x0
                + self._gather("posterior_mean_coef2", t, x_t) * x_t)
        variance = self._gather("posterior_variance", t, x_t)
        log_variance = self._gather("posterior_log_variance_clipped", t, x_t)
        return mean, variance, log_variance

    # ------------------------------------------------------------------ conversions
    def x0_from_eps(self, x_t, t, eps):
        """x0 = (x_t - sqrt(1-abar) eps) / sqrt(abar) = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps."""
        return (self._gather("sqrt_recip_alphas_cumprod", t, x_t) * x_t
                - self._gather("sqrt_recipm1_alphas_cumprod", t, x_t) * eps)

    def eps_from_x0(self, x_t, t, x0):
        """eps = (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1)."""
        return ((self._gather("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x0)
                / self._gather("sqrt_recipm1_alphas_cumprod", t, x_t))

    def v_from_x0_eps(self, x0, eps, t):
        """v = sqrt(abar) eps - sqrt(1-abar) x0."""
        return (self._gather("sqrt_alphas_cumprod", t, x0) * eps
                - self._gather("sqrt_one_minus_alphas_cumprod", t, x0) * x0)

    def x0_from_v(self, x_t, t, v):
        """x0 = sqrt(abar) x_t - sqrt(1-abar) v."""
        return (self._gather("sqrt_alphas_cumprod", t, x_t) * x_t
                - self._gather("sqrt_one_minus_alphas_cumprod", t, x_t) * v)

    def eps_from_v(self, x_t, t, v):
        """eps = sqrt(1-abar) x_t + sqrt(abar) v."""
        return (self._gather("sqrt_one_minus_alphas_cumprod", t, x_t) * x_t
                + self._gather("sqrt_alphas_cumprod", t, x_t) * v)

    def target_from_x0_eps(self, x0, eps, t):
        """What the mean channels should output for (x0, eps): eps, x0 or v."""
        if self.mean_type is MeanType.EPS:
            return eps
        if self.mean_type is MeanType.X0:
            return x0
        return self.v_from_x0_eps(x0, eps, t)

    # ------------------------------------------------------------------ reverse process
    def run_model(self, model, x, t, model_kwargs=None) -> torch.Tensor:
        """model(x, timestep_map[t], **model_kwargs), checked for shape, cast to x's dtype."""
        output = model(x, self.model_timesteps(t), **(model_kwargs or {}))
        return self._check_output(output, x)

    def _check_output(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        expected = list(x.shape)
        if self.learns_sigma:
            expected[1] *= 2
        if list(output.shape) != expected:
            why = " (2x the channels along dim 1 for learned_range)" if self.learns_sigma else ""
            raise ValueError(f"model output has shape {tuple(output.shape)}, expected "
                             f"{tuple(expected)}{why}")
        return output.to(x.dtype)

    def _split_output(self, output: torch.Tensor):
        """(mean channels, raw variance channels or None)."""
        if self.learns_sigma:
            return torch.chunk(output, 2, dim=1)
        return output, None

    def _variance(self, raw_variance, x, t):
        """(variance, log_variance, v_frac) of p(x_{t-1} | x_t), each x's shape (v_frac or None)."""
        if self.reverse_variance is not None:
            return (self._gather("reverse_variance", t, x).expand(x.shape),
                    self._gather("reverse_log_variance", t, x).expand(x.shape), None)
        if self.var_type is VarType.LEARNED_RANGE:
            v_frac = (raw_variance + 1.0) / 2.0
            min_log = self._gather("posterior_log_variance_clipped", t, x)
            max_log = self._gather("log_betas", t, x)
            log_variance = v_frac * max_log + (1.0 - v_frac) * min_log
            return torch.exp(log_variance), log_variance, v_frac
        if self.var_type is VarType.FIXED_LARGE:
            variance, log_variance = "large_variance", "large_log_variance"
        else:
            variance, log_variance = "posterior_variance", "posterior_log_variance_clipped"
        return (self._gather(variance, t, x).expand(x.shape),
                self._gather(log_variance, t, x).expand(x.shape), None)

    def p_mean_variance(self, model, x, t, model_kwargs=None, clip_denoised=False,
                        model_output: torch.Tensor | None = None) -> dict:
        """p_theta(x_{t-1} | x_t) = N(mean, variance) from one model evaluation.

        `t` indexes this diffusion's schedule. With `model_output` given the model is not
        called. pred_xstart is the model's x0 estimate, clamped by clip_denoised (True:
        to [-1, 1]; a (low, high) pair of numbers or tensors broadcastable to x: to that
        box; False/None: not at all, see clip_bounds); mean is the posterior mean q(x_{t-1} | x_t, pred_xstart); pred_eps
        is the eps consistent with (x_t, pred_xstart).

        Returns dict(mean, variance, log_variance, pred_xstart, pred_eps: x's shape;
        v_frac: x's shape for learned_range else None; model_output: the raw output).
        """
        self._check_t(t, x)
        if model_output is None:
            model_output = self.run_model(model, x, t, model_kwargs)
        else:
            model_output = self._check_output(model_output, x)
        mean_output, raw_variance = self._split_output(model_output)
        variance, log_variance, v_frac = self._variance(raw_variance, x, t)

        if self.mean_type is MeanType.EPS:
            pred_xstart = self.x0_from_eps(x, t, mean_output)
            pred_eps = mean_output
        elif self.mean_type is MeanType.X0:
            pred_xstart = mean_output
            pred_eps = None
        else:
            pred_xstart = self.x0_from_v(x, t, mean_output)
            pred_eps = self.eps_from_v(x, t, mean_output)
        bounds = clip_bounds(clip_denoised, x)
        if bounds is not None:
            pred_xstart = torch.clamp(pred_xstart, min=bounds[0], max=bounds[1])
            pred_eps = None
        if pred_eps is None:
            pred_eps = self.eps_from_x0(x, t, pred_xstart)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "pred_eps": pred_eps,
            "v_frac": v_frac,
            "model_output": model_output,
        }

    def predict_at(self, model, x: torch.Tensor, t_model: torch.Tensor, alpha: torch.Tensor,
                   sigma: torch.Tensor, model_kwargs=None, clip_denoised=False):
        """The model's (x0, eps) estimates at any point of the forward process, also between
        this schedule's steps: x = alpha x0 + sigma eps (x's shape), t_model (B,) the original
        timestep the network sees (possibly fractional), alpha = sqrt(abar) and sigma =
        sqrt(1 - abar) of that point as (B, 1, ...) tensors. Mean types convert as in
        p_mean_variance (eps: x0 = (x - sigma eps) / alpha; v: x0 = alpha x - sigma v, eps =
        sigma x + alpha v); clip_denoised clamps x0 (see clip_bounds) and eps then follows
        from the clamped x0. Learned variance channels are ignored."""
        output = self._check_output(model(x, t_model, **(model_kwargs or {})), x)
        mean_output, _ = self._split_output(output)
        if self.mean_type is MeanType.EPS:
            x0, eps = (x - sigma * mean_output) / alpha, mean_output
        elif self.mean_type is MeanType.X0:
            x0, eps = mean_output, None
        else:
            x0, eps = alpha * x - sigma * mean_output, sigma * x + alpha * mean_output
        bounds = clip_bounds(clip_denoised, x)
        if bounds is not None:
            x0, eps = torch.clamp(x0, min=bounds[0], max=bounds[1]), None
        if eps is None:
            eps = (x - alpha * x0) / sigma
        return x0, eps

    # ------------------------------------------------------------------ variational bound
    def decoder_nll(self, x0, mean, log_variance) -> torch.Tensor:
        """-log p(x0 | x_1) in bits/dim, (B,): discretized Gaussian (images) or density."""
        log_scales = 0.5 * log_variance
        if self.data_kind is DataKind.IMAGE:
            log_likelihood = discretized_gaussian_log_likelihood(x0, mean, log_scales)
        else:
            log_likelihood = gaussian_log_likelihood(x0, mean, log_scales)
        return -mean_flat(log_likelihood) / math.log(2.0)

    def vlb_terms(self, model, x0, x_t, t, model_kwargs=None, clip_denoised: bool = False,
                  model_output: torch.Tensor | None = None) -> dict:
        """The VLB term at t per batch element, in bits/dim.

        L_t = KL(q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t)) for t >= 1 and the decoder
        NLL -log p_theta(x0 | x_1) at t = 0 (discretized Gaussian for images, Gaussian
        density for continuous data), both averaged over dimensions and divided by ln 2.
        Returns dict(output (B,), pred_xstart (x0's shape), p_mean_variance (the dict of
        p_mean_variance the terms were computed from)).
        """
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x0, x_t, t)
        out = self.p_mean_variance(model, x_t, t, model_kwargs, clip_denoised, model_output)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"]))
        kl = kl / math.log(2.0)
        nll = self.decoder_nll(x0, out["mean"], out["log_variance"])
        return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"],
                "p_mean_variance": out}

    def prior_bpd(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x0) || N(0, I)) in bits/dim, (B,). Not trained; near 0 for a good schedule."""
        t = torch.full((x0.shape[0],), self.num_timesteps - 1, device=x0.device, dtype=torch.long)
        mean, _, log_variance = self.q_mean_variance(x0, t)
        kl = normal_kl(mean, log_variance.expand(x0.shape), 0.0, 0.0)
        return mean_flat(kl) / math.log(2.0)

    # ------------------------------------------------------------------ training
    def training_losses(self, model, x0, t, model_kwargs=None, noise=None) -> dict:
        """Per-example losses at timesteps t (B,): dict(loss, mse, vlb), each (B,), from one
        model evaluation at x_t = q_sample(x0, t, noise); the loss type's function in
        core.losses.LOSSES combines them.

        - mse: mean over non-batch dims of (target - mean channels)^2, target = eps, x0 or v.
        - vlb: the per-t VLB term L_t in bits/dim (see vlb_terms).
          For "simple" it is computed from the same model output without gradient;
          for "hybrid" it uses a stop-gradient (detached) mean and the live variance, so it
          trains only the variance channels; for "vlb" both are live.
        - loss: "simple" -> mse; "hybrid" -> mse + lambda_vlb * T * vlb (with lambda 0.001,
          T = 1000 this is improved DDPM's hybrid L_simple + vb * T/1000); "vlb" -> vlb
          (an unbiased estimate of the whole bound is T * E_t[vlb] + prior).
        With loss "simple" and learned_range the variance channels receive no gradient.
        """
        self._check_t(t, x0)
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        model_output = self.run_model(model, x_t, t, model_kwargs)
        mean_output, raw_variance = self._split_output(model_output)
        target = self.target_from_x0_eps(x0, noise, t)
        mse = mean_flat((target - mean_output) ** 2)

        return LOSSES[self.loss_type](LossInputs(self, model, x0, x_t, t, model_output,
                                                 mean_output, raw_variance, mse))

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def calc_bpd_loop(self, model, x0, model_kwargs=None, clip_denoised: bool | None = None,
                      generator: torch.Generator | None = None) -> dict:
        """The full variational bound per example, one model call per timestep.

        For every t a fresh x_t ~ q(x_t | x0) is drawn (from `generator` when given) and
        L_t evaluated. clip_denoised=None means True for images, False for continuous data.
        Returns dict(total_bpd (B,) = vb.sum(1) + prior_bpd, prior_bpd (B,),
        vb (B, T), xstart_mse (B, T), mse (B, T) eps-MSE); column t holds timestep t.
        Units: bits/dim (see the module docstring).
        """
        if clip_denoised is None:
            clip_denoised = self.data_kind is DataKind.IMAGE
        batch = x0.shape[0]
        vb, xstart_mse, eps_mse = [], [], []
        for step in range(self.num_timesteps):
            t = torch.full((batch,), step, device=x0.device, dtype=torch.long)
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                device=x0.device)
            x_t = self.q_sample(x0, t, noise)
            terms = self.vlb_terms(model, x0, x_t, t, model_kwargs, clip_denoised)
            vb.append(terms["output"])
            xstart_mse.append(mean_flat((terms["pred_xstart"] - x0) ** 2))
            eps = self.eps_from_x0(x_t, t, terms["pred_xstart"])
            eps_mse.append(mean_flat((eps - noise) ** 2))
        vb = torch.stack(vb, dim=1)
        prior = self.prior_bpd(x0)
        return {
            "total_bpd": vb.sum(dim=1) + prior,
            "prior_bpd": prior,
            "vb": vb,
            "xstart_mse": torch.stack(xstart_mse, dim=1),
            "mse": torch.stack(eps_mse, dim=1),
        }
